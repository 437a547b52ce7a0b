"""Access tokens for the network face: create (shown once), list, revoke, authenticate."""

from __future__ import annotations

import datetime as dt

from aismm.core.clock import iso, parse_duration
from aismm.core.errors import UsageError
from aismm.infra.hub import Hub
from aismm.infra.tokens import TokenRow, Tokens, new_token
from aismm.state import registry

__all__ = ["Created", "authenticate", "create", "listing", "revoke"]

Created = dict[str, str | None]


def create(hub: Hub, actor: str, expires: str | None = None, note: str = "") -> Created:
    """A new token for a registered actor; the token itself is in the answer and nowhere else."""
    registry.actor(hub, actor)  # an unknown actor is bad input
    until = None
    if expires is not None:
        try:
            span = parse_duration(expires)
        except ValueError as exc:
            raise UsageError(f"--expires {expires}: {exc}; give an ISO 8601 duration like "
                             "P30D or PT12H") from exc
        if span <= dt.timedelta(0):
            raise UsageError(f"--expires {expires}: not a positive duration; give one like P30D")
        until = iso(hub.clock.now() + span)
    if len(note) > 200 or any(ord(c) < 0x20 for c in note):
        raise UsageError("--note: at most 200 printable characters; shorten it")
    with Tokens(hub.db_path) as tokens:
        for _ in range(8):
            token, ident = new_token()
            try:
                row = tokens.add(ident, actor, token, iso(hub.clock.now()), until, note)
            except KeyError:
                continue
            return {"token": token, **row.to_dict()}
    raise UsageError("token create: no free token id after 8 draws; run it again")


def listing(hub: Hub, actor: str | None = None) -> list[TokenRow]:
    """The stored tokens (ids, actors, dates; never a token)."""
    with Tokens(hub.db_path) as tokens:
        return tokens.rows(actor)


def revoke(hub: Hub, ident: str) -> TokenRow:
    """Revoke one token by id; revoking twice keeps the first time."""
    with Tokens(hub.db_path) as tokens:
        row = tokens.revoke(ident, iso(hub.clock.now()))
    if row is None:
        raise UsageError(f"{ident}: no such token id; see `aismm token list`")
    return row


def authenticate(hub: Hub, token: str, actor: str | None = None) -> str | None:
    """The actor a live token belongs to (and must, when ``actor`` is given), else None."""
    with Tokens(hub.db_path) as tokens:
        row = tokens.match(token)
    if row is None or row.revoked is not None:
        return None
    if row.expires is not None and iso(hub.clock.now()) >= row.expires:
        return None
    if actor is not None and actor != row.actor:
        return None
    holder = registry.actors(hub).get(row.actor)
    if holder is None or holder.revoked:  # a revoked actor's tokens prove nothing any more
        return None
    return row.actor
