"""Access tokens in the hub database: only each token's sha256 is stored, never the token.

A token reads ``aismm_<id>_<secret>``: the id (8 hex digits) finds its row, the secret (32 random
bytes, URL-safe base64) is what proves it. The hash of the whole token is compared in constant
time (:func:`hmac.compare_digest`); a lookup that finds no row still compares, against a
stand-in hash, so a wrong id costs the same as a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from aismm.infra.store import connect

__all__ = ["TokenRow", "Tokens", "digest", "new_token", "token_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, actor TEXT NOT NULL, hash TEXT NOT NULL,
    created TEXT NOT NULL, expires TEXT, revoked TEXT, note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tokens_actor ON tokens (actor);
"""
TOKEN = re.compile(r"^aismm_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
_STAND_IN = hashlib.sha256(b"no such token").hexdigest()


def digest(token: str) -> str:
    """The sha256 (hex) stored for a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and its id."""
    ident = secrets.token_hex(4)
    return f"aismm_{ident}_{secrets.token_urlsafe(32)}", ident


def token_id(token: str) -> str | None:
    """The id a well-formed token carries (None for anything else)."""
    match = TOKEN.match(token)
    return match.group(1) if match else None


@dataclass(frozen=True)
class TokenRow:
    """One token as stored (its hash, never the token)."""

    id: str
    actor: str
    created: str
    expires: str | None
    revoked: str | None
    note: str

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "actor": self.actor, "created": self.created,
                "expires": self.expires, "revoked": self.revoked, "note": self.note}


class Tokens:
    """The ``tokens`` table of the hub database."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path)
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Tokens:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, ident: str, actor: str, token: str, created: str, expires: str | None,
            note: str = "") -> TokenRow:
        """Store a token's hash under its id."""
        try:
            self.conn.execute("INSERT INTO tokens (id, actor, hash, created, expires, note) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (ident, actor, digest(token), created, expires, note))
        except sqlite3.IntegrityError as exc:  # 1 in 2^32: the caller draws again
            raise KeyError(ident) from exc
        return TokenRow(ident, actor, created, expires, None, note)

    def rows(self, actor: str | None = None) -> list[TokenRow]:
        """Every token (of ``actor``), oldest first."""
        sql = "SELECT id, actor, created, expires, revoked, note FROM tokens"
        args: tuple[str, ...] = ()
        if actor is not None:
            sql, args = sql + " WHERE actor = ?", (actor,)
        return [TokenRow(*row) for row in self.conn.execute(sql + " ORDER BY created, id", args)]

    def revoke(self, ident: str, at: str) -> TokenRow | None:
        """Mark a token revoked (kept, so the list shows it); None when no such id."""
        self.conn.execute("UPDATE tokens SET revoked = COALESCE(revoked, ?) WHERE id = ?",
                          (at, ident))
        found = [r for r in self.rows() if r.id == ident]
        return found[0] if found else None

    def match(self, token: str) -> TokenRow | None:
        """The row whose hash is this token's (constant-time compare), or None."""
        ident = token_id(token) or ""
        row = self.conn.execute("SELECT id, actor, created, expires, revoked, note, hash "
                                "FROM tokens WHERE id = ?", (ident,)).fetchone()
        stored = row[6] if row else _STAND_IN
        same = hmac.compare_digest(digest(token), stored)
        return TokenRow(*row[:6]) if row and same else None
