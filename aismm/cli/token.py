"""``aismm token``: access tokens for git over HTTP and the JSON API."""

from __future__ import annotations

import click

from aismm.cli.common import emit, hub_from


@click.group("token")
def group() -> None:
    """Create, list and revoke access tokens for `aismm serve --http`."""


@group.command("create")
@click.argument("actor")
@click.option("--expires", metavar="DURATION",
              help="ISO 8601 duration until the token stops working (P30D, PT12H); default never.")
@click.option("--note", default="", help="A label shown by `aismm token list`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def create(ctx: click.Context, actor: str, expires: str | None, note: str,
           as_json: bool) -> None:
    """Make a token for ACTOR and print it once (only its hash is kept)."""
    from aismm.services import tokens

    data = tokens.create(hub_from(ctx), actor, expires, note)
    emit(data, as_json, f"{data['token']}\n  id {data['id']} for {actor}; expires "
         f"{data['expires'] or 'never'}; shown once: store it now (git: user {actor}, this "
         "token as the password; API: Authorization: Bearer <token>)")


@group.command("list")
@click.option("--actor", help="Only this actor's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, actor: str | None, as_json: bool) -> None:
    """List tokens: id, actor, created, expiry, revocation (never the token)."""
    from aismm.services import tokens

    rows = [r.to_dict() for r in tokens.listing(hub_from(ctx), actor)]
    emit(rows, as_json, "\n".join(
        f"{r['id']}  {r['actor']:<20} created {r['created']}  expires {r['expires'] or 'never'}"
        + (f"  REVOKED {r['revoked']}" if r["revoked"] else "") + (f"  {r['note']}" if r["note"]
                                                                  else "")
        for r in rows) or "(no tokens)")


@group.command("revoke")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Revoke the token with id TOKEN_ID (at once, for every request after)."""
    from aismm.services import tokens

    row = tokens.revoke(hub_from(ctx), token_id)
    emit(row.to_dict(), as_json, f"revoked {row.id} ({row.actor}) at {row.revoked}")


def register(cli: click.Group) -> None:
    cli.add_command(group)
