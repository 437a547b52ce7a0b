"""An agent's inbox: the work the hub assigned it that is still open (``aismm agent inbox``).

An assignment is open while the agent's attempt is not closed: its mission is not accepted,
settled, refunded or expired and, for a benchmark mission, no assessment has recorded it yet.
Each row says what the agent should do next and when the work was offered to it (the ref-state
log's time of the mission's creation, :func:`aismm.services.offers.offer_time`), so an external
agent can poll this instead of watching the hub's folder or the assessor's terminal.
"""

from __future__ import annotations

from typing import TypedDict

from aismm.core.errors import AismmError
from aismm.core.refs import ATTEMPT
from aismm.infra.git import Repo
from aismm.infra.hub import BENCH_PREFIX, Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import lifecycle, offers
from aismm.services.lifecycle import AttemptStatus, MissionStatus
from aismm.state import registry

__all__ = ["CLOSED", "Assignment", "inbox", "next_step"]

CLOSED = frozenset({"accepted", "settled", "refunded", "expired"})
"""Mission states in which no attempt is open any more."""


class Assignment(TypedDict):
    """One open assignment of an agent."""

    mission: str
    contract: str
    state: str  # the agent's attempt: assigned, in_review, failed, rework, ...
    mission_state: str
    next: str
    clone: str
    branch: str
    offered_at: str | None
    deadline: str
    tier: str
    price: int
    benchmark: bool


def next_step(attempt: AttemptStatus, status: MissionStatus, benchmark: bool) -> str:
    """What the agent of ``attempt`` should do next, in one line."""
    branch = f"attempts/{attempt['agent']}"
    state = attempt["state"]
    if state == "assigned":
        return (f"deliver: clone, commit deliverable/** on {branch} (signed) and push it "
                f"before {status['deadline']}")
    if state == "failed":
        failure = attempt.get("failure")
        if failure is not None and attempt["dod"] != "fail":
            return f"deliver again on {branch}: the last run failed ({failure['reason']})"
        failed = sorted({str(check.get("name", "?")) for summary in attempt["verdicts"].values()
                         if summary["current"] for check in summary["checks"]
                         if check.get("status") != "pass"})
        what = f" (failed checks: {', '.join(failed)})" if failed else ""
        return f"fix the deliverable and push {branch} again: the platform DoD failed{what}"
    if state == "rework":
        return f"rework as asked in {attempt['open_request']} on {branch}, then push"
    if state == "in_review":
        return "wait: the platform and the reviewers grade your delivery"
    if state == "awaiting_acceptance":
        if benchmark:
            return "wait: the assessor scores your delivery"
        return f"wait: {status['client']} accepts or asks for rework"
    if state == "escalated":
        return "wait: the arbiter rules release or refund"
    return "nothing"


def _assessed(hub: Hub, agent: str) -> set[str]:
    """The benchmark missions an assessment of ``agent`` already recorded (scored or not)."""
    done = set()
    for record in registry.assessments(hub).get(agent, []):
        for task in record.tasks:
            if isinstance(task, dict) and isinstance(task.get("mission"), str):
                done.add(task["mission"])
    return done


def inbox(hub: Hub, agent: str) -> list[Assignment]:
    """The open assignments of ``agent`` (benchmark missions included), oldest offer first."""
    registry.actor(hub, agent)  # an unknown agent is bad input, not an empty inbox
    ref = f"{ATTEMPT}{agent}"
    mine = [m for m in hub.mission_ids(benchmark=True)
            if Repo(hub.mission_path(m)).ref(ref) is not None]
    if not mine:
        return []
    assessed = _assessed(hub, agent)
    snap = registry.snapshot(Repo(hub.registry_path))
    runs = lifecycle.failed_runs(hub)
    rows: list[Assignment] = []
    with Ledger(hub.db_path, hub.clock) as ledger, Store(hub.db_path) as store:
        for mission_id in mine:
            benchmark = mission_id.startswith(BENCH_PREFIX)
            if benchmark and mission_id in assessed:
                continue
            try:
                status = lifecycle.status(hub, mission_id, snap, ledger, runs)
            except AismmError:
                continue  # not a mission (any more): nothing to do there
            attempt = next((a for a in status["attempts"] if a["agent"] == agent), None)
            if attempt is None or status["state"] in CLOSED:
                continue
            rows.append({
                "mission": mission_id, "contract": status["contract"],
                "state": attempt["state"], "mission_state": status["state"],
                "next": next_step(attempt, status, benchmark),
                "clone": str(hub.mission_path(mission_id)), "branch": f"attempts/{agent}",
                "offered_at": offers.offer_time(store, mission_id),
                "deadline": status["deadline"], "tier": status["tier"],
                "price": status["price"], "benchmark": benchmark})
    rows.sort(key=lambda r: (r["offered_at"] or "", r["mission"]))
    return rows
