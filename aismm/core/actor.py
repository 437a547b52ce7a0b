"""Actors (who may sign what) and agent manifests (what an agent does and how it runs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from aismm.core.model import Strict
from aismm.core.money import MAX_AMOUNT
from aismm.core.signing import allowed_signers, parse_public_key

__all__ = [
    "ACTOR_ID",
    "INSTANT",
    "NOTIFY_MAX",
    "ROLES",
    "Actor",
    "Manifest",
    "RetiredKey",
    "Role",
    "Runtime",
    "instant",
    "signers_text",
]

ACTOR_ID = r"^[a-z][a-z0-9-]{1,38}$"
ROLES = ("client", "specialist", "reviewer", "orchestrator", "arbiter", "platform")
Role = Literal["client", "specialist", "reviewer", "orchestrator", "arbiter", "platform"]
ActorId = Annotated[str, Field(pattern=ACTOR_ID)]
#: An instant in UTC to the second, as the hub writes it: ``2026-01-01T00:00:00Z``.
INSTANT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


def instant(text: str) -> dt.datetime:
    """An ``INSTANT`` string as an aware UTC datetime."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _instant(text: str) -> str:
    try:
        instant(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a UTC instant like 2026-01-01T00:00:00Z") from exc
    return text


Instant = Annotated[str, Field(pattern=INSTANT)]


def _public_key(key: str) -> str:
    try:
        return parse_public_key(key)
    except Exception as exc:  # UsageError -> pydantic error text
        raise ValueError(str(exc)) from exc


class RetiredKey(Strict):
    """A key an actor held before a rotation: its signatures count only before ``valid_before``."""

    key: str
    valid_before: Instant

    _key = field_validator("key")(_public_key)
    _when = field_validator("valid_before")(_instant)


class Actor(Strict):
    """A registered actor (``registry.git:actors/<id>.yaml``, platform-signed)."""

    schema_version: Literal[1] = 1
    id: ActorId
    roles: list[Role] = Field(min_length=1)
    owner: ActorId
    key: str
    hosted: bool = False
    revoked: bool = False
    #: When the revocation took effect; the key's signatures count only before it.
    revoked_at: Instant | None = None
    #: Keys rotated out, oldest first (kept so earlier signatures still verify).
    retired_keys: list[RetiredKey] = Field(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles

    _key = field_validator("key")(_public_key)
    _when = field_validator("revoked_at")(lambda v: v if v is None else _instant(v))

    @model_validator(mode="after")
    def _history(self) -> Actor:
        if self.revoked_at is not None and not self.revoked:
            raise ValueError("revoked_at is set but revoked is false")
        blobs = [k.split()[1] for k in (self.key, *(r.key for r in self.retired_keys))]
        if len(set(blobs)) != len(blobs):
            raise ValueError("a key appears twice among key and retired_keys")
        windows = [r.valid_before for r in self.retired_keys]
        if windows != sorted(windows):
            raise ValueError("retired_keys must be in the order they were retired")
        return self

    def all_keys(self) -> list[str]:
        """Every key the actor holds or held: the current one first, then the retired ones."""
        return [self.key, *(r.key for r in self.retired_keys)]


class Runtime(Strict):
    """How a hosted agent runs: ``command`` (argv), ``http`` (POST) or ``git`` (external)."""

    kind: Literal["command", "http", "git"]
    argv: list[str] | None = None
    url: str | None = None
    timeout_seconds: float = Field(default=60, gt=0, le=3600)


#: The longest ``notify`` URL a manifest may name.
NOTIFY_MAX = 2000


def _notify_url(url: str | None) -> str | None:
    """An http(s) URL with a host, no credentials, no whitespace or control characters."""
    if url is None:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # parses it: a bad port raises ValueError here
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@); the manifest is public")
    if port == 0:
        raise ValueError(f"{url!r}: port 0 is not a port")
    return url


class Manifest(Strict):
    """An agent manifest (``registry.git:agents/<id>.yaml``, signed by its provider)."""

    schema_version: Literal[1] = 1
    id: ActorId
    owner: ActorId
    roles: list[Role] = Field(min_length=1)
    contracts: list[str] = Field(min_length=1)
    price: int = Field(ge=0, le=MAX_AMOUNT)
    capacity: int = Field(default=4, gt=0)
    runtime: Runtime
    description: str = ""
    #: An http(s) URL the hub POSTs ``{agent, mission, contract, clone, offered_at}`` to when it
    #: offers the agent work (best effort; ``aismm agent inbox`` is the record).
    notify: str | None = Field(
        default=None, min_length=8, max_length=NOTIFY_MAX, pattern=r"^https?://",
        description="http(s) URL the hub POSTs {agent, mission, contract, clone, offered_at} to "
                    "when it offers the agent work (best effort; `aismm agent inbox` lists it)")

    _notify = field_validator("notify")(_notify_url)

    @model_serializer(mode="wrap")
    def _omit_unset_notify(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``notify`` a manifest reads (and is published) exactly as before it existed."""
        data: dict[str, Any] = handler(self)
        if data.get("notify") is None:
            data.pop("notify", None)
        return data


def signers_text(actors: Iterable[Actor]) -> str:
    """The ``allowed_signers`` file of ``actors``, as the hub writes it.

    Current keys of active actors verify without limit; a rotated-out key verifies only
    commits dated up to its ``valid_before`` and a revoked actor's key only those dated up to
    ``revoked_at`` (OpenSSH ``valid-before``; git passes the commit's date as the verify time),
    so history made before a rotation or revocation keeps verifying. A key revoked without a
    recorded instant is left out.
    """
    entries: list[tuple[str, str, dt.datetime | None]] = []
    for a in actors:
        who = f"{a.id}@aismm.invalid"
        entries += [(who, r.key, instant(r.valid_before)) for r in a.retired_keys]
        if not a.revoked:
            entries.append((who, a.key, None))
        elif a.revoked_at is not None:
            entries.append((who, a.key, instant(a.revoked_at)))
    return allowed_signers(entries)
