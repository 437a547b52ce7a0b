"""The documents inside a mission repository: ``mission.yaml``, verdicts and requests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from aismm.core.actor import ActorId
from aismm.core.clock import Instant
from aismm.core.model import Strict
from aismm.core.money import MAX_AMOUNT

__all__ = [
    "MISSION_ID",
    "TREE_ID",
    "Assignment",
    "CheckResult",
    "ContractPin",
    "MissionDoc",
    "Request",
    "Verdict",
]

MISSION_ID = r"^[a-z][a-z0-9-]{2,62}$"
TREE_ID = r"^[0-9a-f]{40}$"
Sha = Annotated[str, Field(pattern=TREE_ID)]


class ContractPin(Strict):
    """The contract a mission runs under, pinned by digest."""

    ref: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Assignment(Strict):
    """Who may deliver: agents named directly, or the top N of a contest."""

    mode: Literal["direct", "contest"] = "direct"
    agents: list[ActorId] = Field(min_length=1)


class MissionDoc(Strict):
    """``mission.yaml`` on ``main``: the client-signed definition of a mission."""

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(pattern=MISSION_ID)]
    contract: ContractPin
    client: ActorId
    tier: Literal["T0", "T1", "T2"]
    price: int = Field(ge=0, le=MAX_AMOUNT)
    fee: int = Field(ge=0, le=MAX_AMOUNT)
    fee_bp: int = Field(ge=0, le=10000)
    created: Instant
    deadline: Instant
    assignment: Assignment
    reviewers: list[ActorId] = Field(default_factory=list)
    arbiter: ActorId
    parent: str | None = None


class CheckResult(Strict):
    """The outcome of one DoD check."""

    name: str
    status: Literal["pass", "fail", "error", "skip"]
    detail: str = ""


class Verdict(Strict):
    """``verdicts/<reviewer>.yaml``: a judgement bound to one deliverable tree."""

    schema_version: Literal[1] = 1
    mission: str
    reviewer: ActorId
    deliverable_tree: Sha
    verdict: Literal["pass", "fail", "release", "refund"]
    score: int = Field(ge=0, le=100)
    rubric: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(default_factory=dict)
    checks: list[CheckResult] = Field(default_factory=list)
    comments: str = ""


class Request(Strict):
    """``requests/<nnn>-<kind>.yaml``: the client asks for rework or escalates."""

    schema_version: Literal[1] = 1
    mission: str
    kind: Literal["rework", "escalation"]
    deliverable_tree: Sha
    reason: str = Field(min_length=1, max_length=4000)
