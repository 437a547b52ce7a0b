"""Who may read what over the network (docs/protocol.md, "Transport identity and read rules").

A mission is readable by its client, its assigned agents, its reviewers, its arbiter and the
platform. In a contest that is still open an assigned agent sees ``main``, ``accepted`` and its
own attempt only: every rival's ``attempts/<agent>`` is hidden (from the ref advertisement, and
not fetchable by object id). ``registry.git`` is readable by every actor with a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from aismm.core.refs import ATTEMPT, REFUNDED, SETTLED
from aismm.infra.hub import Hub
from aismm.services.mission import open_mission

__all__ = ["Access", "mission_access", "readers"]


@dataclass(frozen=True)
class Access:
    """What one actor may do with one repository."""

    read: bool
    hidden: tuple[str, ...] = ()  # git hideRefs entries (in order) for this reader


def readers(hub: Hub, mission_id: str) -> set[str]:
    """Every actor who may read a mission."""
    _repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    return {doc.client, *doc.assignment.agents, *doc.reviewers, doc.arbiter,
            hub.config.arbiter, hub.config.platform}


def mission_access(hub: Hub, mission_id: str, actor: str) -> Access:
    """What ``actor`` may read of a mission (an unknown mission raises MissionError)."""
    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    overseers = {doc.client, *doc.reviewers, doc.arbiter, hub.config.arbiter,
                 hub.config.platform}
    agents = doc.assignment.agents
    if actor in overseers:
        return Access(True)
    if actor not in agents:
        return Access(False)
    closed = repo.ref(SETTLED) is not None or repo.ref(REFUNDED) is not None
    if doc.assignment.mode != "contest" or closed:
        return Access(True)
    # every attempt hidden but the reader's own (git's hideRefs: the later "!" entry wins),
    # so an attempt ref that appears after this check is hidden too
    return Access(True, (ATTEMPT.rstrip("/"), f"!{ATTEMPT}{actor}"))
