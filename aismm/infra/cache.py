"""Derived data on disk, keyed by what it was derived from (a commit id, a set of ref values).

A cache file is ``<folder>/<kind>-<key>.json``: a header line (JSON: format, kind, key and the
sha256 of the body) and the body bytes. A key names content, so an entry is never stale; the
header binds the body to its kind and key, so a torn, truncated, renamed or foreign file is not
read (it is derived again and rewritten). Readers that act on an entry validate its body as they
would the data it was derived from.

Trust: the folders are the hub's own (inside its repositories), as trusted as ``hub.db`` and the
ref-state log; whoever can write them can write those too. The header's digest detects damage,
not a forger with the hub's file permissions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

__all__ = ["FOLDER", "drop", "read", "write"]

#: The folder, inside a repository's git directory, that holds its derived caches.
FOLDER = "aismm-cache"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_KEY = re.compile(r"^[0-9a-f]{1,64}$")
_FORMAT = 1


def _path(folder: Path, kind: str, key: str) -> Path:
    if not _NAME.match(kind) or not _KEY.match(key):
        raise ValueError(f"cache: bad kind {kind!r} or key {key!r}")
    return folder / f"{kind}-{key}.json"


def read(folder: Path, kind: str, key: str) -> bytes | None:
    """The body cached for ``kind``/``key``, or None when absent or not intact."""
    try:
        with _path(folder, kind, key).open("rb") as handle:
            header = json.loads(handle.readline())
            body = handle.read()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or \
            header.get("kind") != kind or header.get("key") != key or \
            header.get("sha256") != hashlib.sha256(body).hexdigest():
        return None
    return body


def write(folder: Path, kind: str, key: str, body: bytes, keep: int = 4) -> bool:
    """Store ``body`` for ``kind``/``key`` (atomically: write aside, rename); keep the ``keep``
    newest entries of the kind. False when the folder cannot be written (nothing is cached)."""
    target = _path(folder, kind, key)
    header = json.dumps({"format": _FORMAT, "kind": kind, "key": key,
                         "sha256": hashlib.sha256(body).hexdigest()}, sort_keys=True)
    import tempfile  # noqa: PLC0415 - lean hook path: it only reads entries (~5 ms of imports)

    try:
        folder.mkdir(exist_ok=True)
        fd, aside = tempfile.mkstemp(prefix=f".{kind}-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header.encode() + b"\n" + body)
            os.replace(aside, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(aside)
            raise
        entries = sorted(folder.glob(f"{kind}-*.json"), key=_mtime, reverse=True)
        for old in entries[keep:]:
            if old != target:
                with contextlib.suppress(OSError):
                    old.unlink()
    except OSError:
        return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def drop(folder: Path) -> None:
    """Remove every cache entry in ``folder`` (they are derived again on demand)."""
    for entry in folder.glob("*.json"):
        with contextlib.suppress(OSError):
            entry.unlink()
