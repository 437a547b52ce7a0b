"""Actors (who may sign what) and agent manifests (what an agent does and how it runs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from aismm.ledger import MAX_AMOUNT
from aismm.model import Strict

__all__ = ["Actor", "Manifest", "Runtime", "ROLES", "Role", "ACTOR_ID"]

ACTOR_ID = r"^[a-z][a-z0-9-]{1,38}$"
ROLES = ("client", "specialist", "reviewer", "orchestrator", "arbiter", "platform")
Role = Literal["client", "specialist", "reviewer", "orchestrator", "arbiter", "platform"]
ActorId = Annotated[str, Field(pattern=ACTOR_ID)]


class Actor(Strict):
    """A registered actor (``registry.git:actors/<id>.yaml``, platform-signed)."""

    schema_version: Literal[1] = 1
    id: ActorId
    roles: list[Role] = Field(min_length=1)
    owner: ActorId
    key: str
    hosted: bool = False
    revoked: bool = False

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        from aismm.signing import parse_public_key

        try:
            return parse_public_key(key)
        except Exception as exc:  # UsageError -> pydantic error text
            raise ValueError(str(exc)) from exc


class Runtime(Strict):
    """How a hosted agent runs: ``command`` (argv), ``http`` (POST) or ``git`` (external)."""

    kind: Literal["command", "http", "git"]
    argv: list[str] | None = None
    url: str | None = None
    timeout_seconds: float = Field(default=60, gt=0, le=3600)


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
