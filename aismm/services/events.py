"""The outbox: every accepted ref update is recorded as an event (the ref-state log).

:mod:`aismm.services.worker` processes them. A batch that creates a mission is also an offer
to its agents, announced by :mod:`aismm.services.offers` once it is logged."""

from __future__ import annotations

from pathlib import Path

from aismm.core.clock import iso
from aismm.infra.hub import Hub
from aismm.infra.store import Store
from aismm.services import offers

__all__ = ["in_progress", "record"]


def record(hub: Hub, repo_path: Path, updates: list[tuple[str, str, str]],
           pusher: str | None) -> None:
    """Append accepted ref updates to the durable outbox in hub.db (announcing a new
    mission's offer to its agents' notify URLs, in the background)."""
    name = repo_path.resolve().relative_to(hub.root).as_posix()
    at = iso(hub.clock.now())
    with Store(hub.db_path) as store:
        store.record_updates(name, updates, pusher, at)
    offers.announce(hub, repo_path, updates, at)


def in_progress(hub: Hub) -> list[str]:
    """One line per live worker still holding claims on pending events (run again later)."""
    with Store(hub.db_path) as store:
        busy = store.busy()
    return [f"aismm: {n} event{'s are' if n != 1 else ' is'} being processed by {who}; "
            "run again later" for who, n in busy.items()]


