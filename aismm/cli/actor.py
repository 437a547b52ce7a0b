"""``aismm actor``: register and list actors."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli import emit, hub_from


@click.group("actor")
def group() -> None:
    """Register and inspect actors (signed documents in registry.git)."""


@group.command("add")
@click.argument("actor_id")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["client", "specialist", "reviewer", "orchestrator", "arbiter"]),
              help="A role (repeat for several).")
@click.option("--owner", help="The organisation paid or paying (default: the actor itself).")
@click.option("--pubkey", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The actor's ssh-ed25519 public key file (external actor).")
@click.option("--hosted", is_flag=True, help="The hub creates and keeps the actor's key.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def add(ctx: click.Context, actor_id: str, roles: tuple[str, ...], owner: str | None,
        pubkey: Path | None, hosted: bool, as_json: bool) -> None:
    """Register ACTOR_ID with its roles and key."""
    from aismm import registry

    hub = hub_from(ctx)
    key_text = pubkey.read_text() if pubkey else None
    if key_text is not None:
        from aismm.signing import parse_public_key

        key_text = parse_public_key(key_text, str(pubkey))
    actor = registry.add_actor(hub, actor_id, list(roles), owner, key_text, hosted)
    data = _describe(hub, actor)
    emit(data, as_json, f"Registered {actor.id} ({', '.join(actor.roles)}; owner {actor.owner})"
         + (f"\n  key file: {data['key_file']}" if actor.hosted else ""))


def _describe(hub: object, actor: object) -> dict[str, object]:
    from aismm.actor import Actor
    from aismm.signing import fingerprint

    assert isinstance(actor, Actor)
    data: dict[str, object] = actor.model_dump(mode="json")
    data["fingerprint"] = fingerprint(actor.key)
    data["key_file"] = str(hub.key_path(actor.id)) if actor.hosted else None  # type: ignore[attr-defined]
    return data


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List registered actors."""
    from aismm import registry

    hub = hub_from(ctx)
    rows = [_describe(hub, a) for _, a in sorted(registry.actors(hub).items())]
    text = "\n".join(f"{r['id']:<22} {','.join(r['roles']):<24} owner={r['owner']:<16} "  # type: ignore[arg-type]
                     f"{'hosted' if r['hosted'] else 'external'}" for r in rows)
    emit(rows, as_json, text or "(no actors)")


@group.command("show")
@click.argument("actor_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, actor_id: str, as_json: bool) -> None:
    """Show one actor (with the key file path of a hosted actor)."""
    from aismm import registry

    hub = hub_from(ctx)
    data = _describe(hub, registry.actor(hub, actor_id))
    emit(data, as_json, "\n".join(f"{k}: {v}" for k, v in data.items()))


def register(cli: click.Group) -> None:
    cli.add_command(group)
