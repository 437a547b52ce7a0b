"""The outbox: accepted ref updates become events, each processed exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aismm.clock import iso
from aismm.store import Store, worker_id

if TYPE_CHECKING:
    from aismm.hub import Hub

__all__ = ["record", "record_and_process", "process", "in_progress"]


def record(hub: "Hub", repo_path: Path, updates: list[tuple[str, str, str]],
           pusher: str | None) -> None:
    """Append accepted ref updates to the durable outbox in hub.db."""
    name = repo_path.resolve().relative_to(hub.root).as_posix()
    with Store(hub.db_path) as store:
        store.record_updates(name, updates, pusher, iso(hub.clock.now()))


def process(hub: "Hub", limit: int | None = None, only_repo: str | None = None,
            max_id: int | None = None) -> list[str]:
    """Drain the outbox: handle each pending event exactly once; return summary lines.

    With ``only_repo``, every pending event is still handled, but only that repository's
    lines are returned (a push reports on its own mission).
    """
    from aismm import lifecycle

    lines: list[str] = []
    worker = worker_id()
    done = 0
    with Store(hub.db_path) as store:
        while limit is None or done < limit:
            event = store.claim(worker, max_id=max_id)
            if event is None:
                break
            mine = only_repo is None or event.repo == only_repo
            try:
                result, out = lifecycle.handle_event(hub, event)
            except Exception as exc:  # noqa: BLE001 - one bad event must not block the others
                reason = _reason(exc)
                store.finish(event.id, {"error": reason}, iso(hub.clock.now()), "failed")
                if mine:
                    lines.append(f"aismm: {event.repo} {event.ref}: processing failed "
                                 f"({reason.splitlines()[0]}); event {event.id} marked failed")
                done += 1
                continue
            store.finish(event.id, result, iso(hub.clock.now()))
            if mine:
                lines.extend(out)
            done += 1
    return lines


def _reason(exc: BaseException) -> str:
    from aismm.errors import AismmError

    text = str(exc).strip()
    if isinstance(exc, AismmError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def in_progress(hub: "Hub") -> list[str]:
    """One line per live worker still holding claims on pending events (run again later)."""
    with Store(hub.db_path) as store:
        busy = store.busy()
    return [f"aismm: {n} event{'s are' if n != 1 else ' is'} being processed by {who}; "
            "run again later" for who, n in busy.items()]


def record_and_process(hub: "Hub", repo_path: Path, updates: list[tuple[str, str, str]],
                       pusher: str | None) -> list[str]:
    """What post-receive does: record, then (inline mode) process before returning."""
    record(hub, repo_path, updates, pusher)
    if hub.config.processing != "inline":
        return [f"aismm: {len(updates)} update(s) queued for the hub"]
    return process(hub, only_repo=repo_path.resolve().relative_to(hub.root).as_posix())
