"""Who is asking: an ``Authorization`` header (HTTP Basic for git, Bearer for the API) turned
into an actor id by :func:`aismm.services.tokens.authenticate`."""

from __future__ import annotations

import base64
import binascii

from aismm.infra.hub import Hub
from aismm.services import tokens

__all__ = ["actor_of"]

MAX_HEADER = 4096


def actor_of(hub: Hub, header: str | None) -> str | None:
    """The authenticated actor of an ``Authorization`` header, or None (missing or bad).

    ``Basic`` carries ``actor:token`` (the token must be that actor's); ``Bearer`` the token.
    """
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return tokens.authenticate(hub, value) if value else None
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep or not user or not secret:
        return None
    return tokens.authenticate(hub, secret, actor=user)
