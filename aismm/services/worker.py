"""The worker: drains the outbox, dispatching each event to what it means (DoD, review, rework,
escalation, settlement), exactly once per event."""

from __future__ import annotations

import json
import time
from pathlib import Path

from aismm.core.clock import iso
from aismm.core.errors import AismmError, SandboxError
from aismm.infra.hub import BENCH_PREFIX, Hub
from aismm.infra.store import Event, Store, worker_id
from aismm.services import delivery, disputes, events, orchestration, settlement
from aismm.services.mission import ACCEPTED, ATTEMPT, MAIN, open_mission
from aismm.state.policy import REQUEST_NAME

__all__ = ["handle_event", "process", "record_and_process"]


def handle_event(hub: Hub, event: Event) -> tuple[dict[str, object], list[str]]:
    """React to one accepted ref update (an outbox event): its result record and lines."""
    if not event.repo.startswith("missions/"):
        return {"skipped": "not a mission"}, []
    mission_id = Path(event.repo).name.removesuffix(".git")
    try:
        repo, policy = open_mission(hub, mission_id)
    except AismmError as exc:
        return {"error": str(exc)}, [f"aismm: {exc}"]
    lines: list[str] = []
    old = None if set(event.old) == {"0"} else event.old
    workflow = orchestration.is_workflow(policy)
    if event.ref.startswith(ATTEMPT):
        agent = event.ref[len(ATTEMPT):]
        old_tree = repo.subtree_id(old, "deliverable") if old else None
        new_tree = repo.subtree_id(event.new, "deliverable")
        if new_tree is not None and new_tree != old_tree:
            lines += delivery.check(hub, mission_id, agent)
        before = set(repo.flatten(old)) if old else set()
        added = sorted(p for p in repo.flatten(event.new) if REQUEST_NAME.match(p)
                       and p not in before)
        for path in added:
            if path.endswith("-rework.yaml") and workflow:  # an orchestrator answers by plan
                lines += orchestration.wake(hub, mission_id)
            elif path.endswith("-rework.yaml"):
                lines += delivery.dispatch(hub, mission_id, [agent], request=path)
            else:
                lines += disputes.arbitrate(hub, mission_id, agent)
        if workflow:
            lines += orchestration.on_parent_event(hub, mission_id, old, event.new)
    elif event.ref == ACCEPTED and event.new != policy.main:  # at main: created, not accepted
        lines += settlement.settle(hub, mission_id)
    elif event.ref == MAIN and old is None and (not mission_id.startswith(BENCH_PREFIX)
                                                or policy.doc.parent is not None):
        # a new mission is an offer: the hub runs its hosted agents that have not run yet
        # (external ones deliver by git push; `mission run` re-runs hosted ones by hand)
        waiting = [a for a in policy.doc.assignment.agents
                   if repo.ref(f"{ATTEMPT}{a}") == policy.main and delivery.is_hosted(hub, a)]
        if workflow:  # the orchestrator is woken by the routing table the hub writes
            lines += orchestration.start(hub, mission_id)
        elif waiting:
            lines += delivery.dispatch(hub, mission_id, waiting)
    if policy.doc.parent is not None:  # a workflow's child moved: its parent hears of it
        lines += orchestration.on_child_event(hub, mission_id)
    return {"lines": lines}, lines


def process(hub: Hub, limit: int | None = None, only_repo: str | None = None,
            max_id: int | None = None) -> list[str]:
    """Drain the outbox: handle each pending event exactly once; return summary lines.

    With ``only_repo``, every pending event is still handled, but only that repository's
    lines are returned (a push reports on its own mission).
    """
    return _drain(hub, limit, only_repo, max_id)[0]


def _drain(hub: Hub, limit: int | None = None, only_repo: str | None = None,
           max_id: int | None = None) -> tuple[list[str], set[int]]:
    """:func:`process`, also returning the ids of the events this call handled."""
    lines: list[str] = []
    handled: set[int] = set()
    worker = worker_id()
    with Store(hub.db_path) as store:
        while limit is None or len(handled) < limit:
            event = store.claim(worker, max_id=max_id)
            if event is None:
                break
            handled.add(event.id)
            mine = only_repo is None or event.repo == only_repo
            try:
                result, out = handle_event(hub, event)
            except SandboxError:
                # the hub cannot run agent code here: its fault, not the event's. Nothing was
                # committed for it; the event stays pending for when the sandbox works again.
                store.release(event.id)
                raise
            except Exception as exc:  # one bad event must not block the others
                reason = _reason(exc)
                line = _failed_line(event.repo, event.ref, event.id, reason)
                store.finish(event.id, {"error": reason, "lines": [line]},
                             iso(hub.clock.now()), "failed")
                if mine:
                    lines.append(line)
                continue
            store.finish(event.id, {**result, "lines": list(out)}, iso(hub.clock.now()))
            if mine:
                lines.extend(out)
    return lines, handled


def _failed_line(repo: str, ref: str, event_id: int, reason: str) -> str:
    return (f"aismm: {repo} {ref}: processing failed ({reason.splitlines()[0]}); event "
            f"{event_id} marked failed")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, AismmError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def record_and_process(hub: Hub, repo_path: Path, updates: list[tuple[str, str, str]],
                       pusher: str | None, wait_seconds: float = 300.0) -> list[str]:
    """What post-receive does: record, then (inline mode) process before returning.

    The lines returned are this repository's: its events handled here, plus the lines of this
    push's own events that a concurrent worker (another push, ``aismm serve``) happened to
    claim first, read back from the outbox once that worker finished them (waiting at most
    ``wait_seconds``; a worker that dies meanwhile leaves its events to this one).
    """
    events.record(hub, repo_path, updates, pusher)
    if hub.config.processing != "inline":
        return [f"aismm: {len(updates)} update(s) queued for the hub"]
    name = repo_path.resolve().relative_to(hub.root).as_posix()
    with Store(hub.db_path) as store:
        own = store.event_ids(name, updates)
    lines, handled = _drain(hub, only_repo=name)
    elsewhere = [i for i in own if i not in handled]
    deadline = time.monotonic() + wait_seconds
    with Store(hub.db_path) as store:
        while elsewhere:
            rows = {row.id: row for row in store.events_by_id(elsewhere)}
            if any(row.status == "pending" for row in rows.values()):
                if time.monotonic() >= deadline:
                    lines.append(f"aismm: {name}: still being processed by another worker; "
                                 "`aismm mission status` shows the outcome later")
                    break
                more, done = _drain(hub, only_repo=name)  # free again if its worker died
                lines += more
                elsewhere = [i for i in elsewhere if i not in done]
                time.sleep(0.05)
                continue
            for event_id in elsewhere:
                row = rows.get(event_id)
                try:
                    result = json.loads(row.result or "{}") if row else {}
                except ValueError:
                    result = {}
                lines += [str(x) for x in result.get("lines", [])] if \
                    isinstance(result, dict) and isinstance(result.get("lines"), list) else []
            break
    return lines
