"""Execution records: one per attempt outcome, the input of reputation (docs/reputation.md)."""

from __future__ import annotations

import hashlib

from aismm.core.clock import iso
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.store import Store
from aismm.services.lifecycle import delivered_at
from aismm.services.mission import ACCEPTED, ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import read_verdict

__all__ = ['record_execution', 'record_outcomes']


def record_execution(hub: Hub, mission_id: str, agent: str, outcome: str,
                     detail: str = "") -> None:
    """Append one execution record (idempotent per mission, agent and outcome head)."""
    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    snap = registry.snapshot(Repo(hub.registry_path))
    head = repo.ref(f"{ATTEMPT}{agent}") or policy.main
    quality = _quality(repo, head) if outcome != "failed" else 0.0
    created = doc.created
    tree = repo.subtree_id(head, "deliverable")
    delivered = delivered_at(hub, mission_id, agent, tree) or hub.clock.now().timestamp()
    latency = max(0.0, float(delivered - created.timestamp()))
    key = f"{mission_id}\0{agent}\0{outcome}\0{head}\0{detail}"
    record = {
        "id": hashlib.sha256(key.encode()).hexdigest()[:32], "agent": agent,
        "agent_owner": snap.actors[agent].owner if agent in snap.actors else agent,
        "client": doc.client, "client_owner": snap.actors[doc.client].owner
        if doc.client in snap.actors else doc.client, "contract": doc.contract.ref,
        "mission": mission_id, "finished_at": iso(hub.clock.now()), "latency_seconds": latency,
        "quality": quality, "outcome": outcome,
        "reworks": sum(1 for p in repo.flatten(head) if p.endswith("-rework.yaml")),
        "cost": doc.price if outcome == "accepted" else 0,
        "commits": {"head": head, "accepted": repo.ref(ACCEPTED), "detail": detail[:300]},
    }
    with Store(hub.db_path) as store:
        store.add_execution(record)


def _quality(repo: Repo, head: str) -> float:
    """Quality 0-100: mean of the platform DoD score and the reviewers' scores, current tree."""
    tree = repo.subtree_id(head, "deliverable")
    if tree is None:
        return 0.0
    scores = []
    for path in repo.flatten(head):
        if path.startswith("verdicts/") and path != "verdicts/arbiter.yaml":
            v = read_verdict(repo, head, path)
            if v is not None and v.deliverable_tree == tree:
                scores.append(v.score)
    return round(sum(scores) / len(scores), 2) if scores else 0.0


def record_outcomes(hub: Hub, mission_id: str, accepted_agent: str | None) -> None:
    """One execution record per assigned agent once the mission closed (accepted or not)."""
    _repo, policy = open_mission(hub, mission_id)
    for agent in policy.doc.assignment.agents:
        if agent == accepted_agent:
            outcome = "accepted"
        elif accepted_agent is not None:
            outcome = "not_selected"
        else:
            outcome = "refunded"
        record_execution(hub, mission_id, agent, outcome)
