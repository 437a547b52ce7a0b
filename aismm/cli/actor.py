"""``aismm actor``: register, list, rotate and revoke actors."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli.common import emit, hub_from, read_text
from aismm.core.actor import Actor
from aismm.core.signing import fingerprint, parse_public_key
from aismm.infra.hub import Hub
from aismm.services import registrar


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

    hub = hub_from(ctx)
    key_text = read_text(pubkey, "--pubkey") if pubkey else None
    if key_text is not None:
        key_text = parse_public_key(key_text, str(pubkey))
    actor = registrar.add_actor(hub, actor_id, list(roles), owner, key_text, hosted)
    data = _describe(hub, actor)
    emit(data, as_json, f"Registered {actor.id} ({', '.join(actor.roles)}; owner {actor.owner})"
         + (f"\n  key file: {data['key_file']}" if actor.hosted else ""))


def _state(actor: Actor) -> str:
    return "revoked" if actor.revoked else "active"


def _describe(hub: Hub, actor: Actor) -> dict[str, object]:
    data: dict[str, object] = actor.model_dump(mode="json")
    data["state"] = _state(actor)
    data["fingerprint"] = fingerprint(actor.key)
    data["rotated_keys"] = len(actor.retired_keys)
    data["retired_keys"] = [{**r.model_dump(mode="json"), "fingerprint": fingerprint(r.key)}
                            for r in actor.retired_keys]
    data["key_file"] = str(hub.key_path(actor.id)) if actor.hosted and not actor.revoked else None
    return data


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List registered actors (revoked ones too), with their state and rotated keys."""
    from aismm.state import registry

    hub = hub_from(ctx)
    found = [a for _, a in sorted(registry.actors(hub).items())]
    text = "\n".join(f"{a.id:<22} {','.join(a.roles):<24} owner={a.owner:<16} "
                     f"{'hosted' if a.hosted else 'external':<8} {_state(a):<7} "
                     f"rotated={len(a.retired_keys)}" for a in found)
    emit([_describe(hub, a) for a in found], as_json, text or "(no actors)")


@group.command("show")
@click.argument("actor_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, actor_id: str, as_json: bool) -> None:
    """Show one actor (revoked too): keys, retired keys with their windows, key file."""
    from aismm.state import registry

    hub = hub_from(ctx)
    found = registry.actors(hub).get(actor_id)
    if found is None:
        found = registry.actor(hub, actor_id)  # raises the usual "unknown actor" error
    data = _describe(hub, found)
    emit(data, as_json, _show_text(found, data))


def _show_text(actor: Actor, data: dict[str, object]) -> str:
    lines = []
    for k, v in data.items():
        if k == "retired_keys":
            lines.append(f"retired_keys: {len(actor.retired_keys) or 'none'}")
            lines += [f"  {fingerprint(r.key)} valid before {r.valid_before}  ({r.key})"
                      for r in actor.retired_keys]
        else:
            lines.append(f"{k}: {v}")
    return "\n".join(lines)


@group.command("rotate")
@click.argument("actor_id")
@click.option("--pubkey", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The external actor's new ssh-ed25519 public key file.")
@click.option("--hosted", is_flag=True, help="The hub makes the hosted actor's new key.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rotate(ctx: click.Context, actor_id: str, pubkey: Path | None, hosted: bool,
           as_json: bool) -> None:
    """Give ACTOR_ID a new key; the old one verifies only what it signed before now."""

    hub = hub_from(ctx)
    key_text = read_text(pubkey, "--pubkey") if pubkey else None
    if key_text is not None:
        key_text = parse_public_key(key_text, str(pubkey))
    actor = registrar.rotate_actor(hub, actor_id, key_text, hosted)
    data = _describe(hub, actor)
    retired = actor.retired_keys[-1]
    emit(data, as_json, f"Rotated the key of {actor.id}: now {data['fingerprint']}; the old "
         f"key verifies only commits dated up to {retired.valid_before}"
         + (f"\n  key file: {data['key_file']}" if actor.hosted else ""))


@group.command("revoke")
@click.argument("actor_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def revoke(ctx: click.Context, actor_id: str, as_json: bool) -> None:
    """Revoke ACTOR_ID for good; its key verifies only what it signed before now."""

    hub = hub_from(ctx)
    actor = registrar.revoke_actor(hub, actor_id)
    emit(_describe(hub, actor), as_json,
         f"Revoked {actor.id} at {actor.revoked_at}; pushes it signs are refused from now on")


def register(cli: click.Group) -> None:
    cli.add_command(group)
