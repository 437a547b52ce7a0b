"""A mission's policy as its repository holds it: definition, frozen contract, verdicts, quorum.

Read-only helpers shared by the gate, the lifecycle and settlement.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from pydantic import ValidationError

from aismm.core.actor import Actor
from aismm.core.contract import Contract, parse_contract
from aismm.core.document import MissionDoc, Verdict
from aismm.core.errors import GateRejection, Problem
from aismm.core.model import load_document, load_yaml
from aismm.core.refs import ACCEPTED, ATTEMPT, MAIN, TAGS
from aismm.infra.git import Repo
from aismm.state.registry import Snapshot

__all__ = [
    "ACCEPTED",
    "ATTEMPT",
    "MAIN",
    "REQUEST_NAME",
    "TAGS",
    "MissionPolicy",
    "agent_of",
    "dependence",
    "load_policy",
    "quorum",
    "read_verdict",
    "verdict_time",
]

REQUEST_NAME = re.compile(r"^requests/(\d{3})-(rework|escalation)\.yaml$")


def agent_of(ref: str) -> str:
    """The agent of an ``attempts/<agent>`` ref."""
    return ref[len(ATTEMPT):]


@dataclass(frozen=True)
class MissionPolicy:
    """The rules a mission repository holds on main: its definition and frozen contract."""

    main: str
    doc: MissionDoc
    contract: Contract
    schemas: dict[str, bytes]


@functools.lru_cache(maxsize=64)
def _frozen_contract(raw: bytes) -> Contract:
    """Parse a mission's frozen contract once per distinct content (models are immutable)."""
    return parse_contract(raw, "contract.yaml")


def load_policy(repo: Repo) -> MissionPolicy | None:
    """The mission's policy from ``main`` (None when main does not exist yet).

    Remembered per ``main`` commit id (the policy is a function of that commit's content, so
    an entry is never stale): the services read it several times per event."""
    main = repo.ref(MAIN)
    if main is None:
        return None
    known = _POLICIES.get(main)
    if known is not None:
        return known
    policy = _read_policy(repo, main)
    if len(_POLICIES) >= _POLICIES_KEPT:
        _POLICIES.clear()
    _POLICIES[main] = policy
    return policy


_POLICIES: dict[str, MissionPolicy] = {}
_POLICIES_KEPT = 1024  # missions' main commits (a policy is a few kilobytes)


def _read_policy(repo: Repo, main: str) -> MissionPolicy:
    raw = repo.read(main, "mission.yaml")
    if raw is None:
        raise GateRejection([Problem(MAIN, "mission.yaml", "missing", "repair the mission")])
    doc = MissionDoc.model_validate(load_yaml(raw, "mission.yaml"))
    contract = _frozen_contract(repo.read(main, "contract.yaml") or b"")
    schemas = {p: repo.read(main, p) or b"{}" for p in contract.schema_paths()}
    return MissionPolicy(main, doc, contract, schemas)


def dependence(reviewer: Actor, agent_id: str, agent: Actor | None, client: Actor | None
               ) -> str | None:
    """Why a reviewer is not independent of an attempt (None when it is)."""
    if reviewer.id == agent_id:
        return "it is the agent"
    if agent is not None and reviewer.owner == agent.owner:
        return f"same owner {agent.owner} as the agent"
    if client is not None and (reviewer.owner == client.owner or reviewer.id == client.id):
        return f"same owner {client.owner} as the client"
    return None


def quorum(repo: Repo, policy: MissionPolicy, head: str, registry: Snapshot) -> list[str]:
    """Distinct independent reviewers whose passing verdict is bound to the current tree."""
    tree = repo.subtree_id(head, "deliverable")
    agent_id = _agent_of_head(repo, head, policy)
    actors = registry.actors
    agent, client = actors.get(agent_id or ""), actors.get(policy.doc.client)
    out = []
    threshold = policy.contract.dod.review.threshold
    for path, entry in repo.flatten(head).items():
        if not path.startswith("verdicts/") or path in ("verdicts/platform.yaml",
                                                        "verdicts/arbiter.yaml"):
            continue
        try:
            v = load_document(Verdict, entry.oid, repo.blob, path)
        except (ValueError, ValidationError):
            continue
        reviewer = actors.get(v.reviewer)
        if (reviewer is None or path != f"verdicts/{v.reviewer}.yaml" or tree is None
                or v.deliverable_tree != tree or v.verdict != "pass" or v.score < threshold
                or dependence(reviewer, agent_id or "", agent, client)):
            continue
        out.append(v.reviewer)
    return sorted(set(out))


def _agent_of_head(repo: Repo, head: str, policy: MissionPolicy) -> str | None:
    for ref, tip in repo.refs(ATTEMPT).items():
        if repo.is_ancestor(head, tip):
            return agent_of(ref)
    return None


def read_verdict(repo: Repo, head: str, path: str) -> Verdict | None:
    raw = repo.read(head, path)
    if raw is None:
        return None
    try:
        return Verdict.model_validate(load_yaml(raw, path))
    except (ValueError, ValidationError):
        return None


def verdict_time(repo: Repo, head: str, path: str) -> int | None:
    """When the current version of a verdict file was committed (by its signer, on the hub
    clock), walking first parents back from ``head``; agents' commit times never count."""
    current = repo.flatten(head).get(path)
    if current is None:
        return None
    commit = head
    while True:
        info = repo.commit(commit)
        if not info.parents:
            return info.time
        parent = info.parents[0]
        earlier = repo.flatten(parent).get(path)
        if earlier is None or earlier.oid != current.oid:
            return info.time
        commit = parent
