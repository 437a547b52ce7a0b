"""Workflow plans: the orchestrator's signed decisions, the hub's outcome records, and the
pure bookkeeping both the gate and the orchestrator derive from them (docs/protocol.md,
"Workflows").

On the orchestrator's attempt branch of a workflow mission::

    plan/NNN-<kind>.yaml        a decision, signed by the orchestrator (kind: open, fallback,
                                rework, give_up)
    orchestration/routing.yaml  the candidates of every step with their routing figures and the
                                child fee rate, written by the platform
    orchestration/NNN.yaml      what became of decision NNN (the child it opened and its state),
                                written by the platform
    orchestration/results/NNN/deliverable/...   the accepted deliverable of decision NNN's
                                child, copied by the platform for the assembly
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from aismm.core.actor import ActorId
from aismm.core.contract import STEP_ID, Contract, Step
from aismm.core.model import Strict
from aismm.core.money import MAX_AMOUNT

__all__ = [
    "CLAIM_TIMEOUT",
    "DECISION_NAME",
    "KINDS",
    "OUTCOME_NAME",
    "RESULTS",
    "ROUTING",
    "STEP_TIMEOUT",
    "Candidate",
    "Decision",
    "Outcome",
    "Pinned",
    "Routing",
    "StepRouting",
    "StepView",
    "View",
    "child_fee",
    "child_id",
    "view",
]

KINDS = ("open", "fallback", "rework", "give_up")
DECISION_NAME = re.compile(r"^plan/(\d{3})-(open|fallback|rework|give_up)\.yaml$")
OUTCOME_NAME = re.compile(r"^orchestration/(\d{3})\.yaml$")
ROUTING = "orchestration/routing.yaml"
# the note of a child's record when a timer closed it (``aismm tick``): its agent never pushed
# within the step's ``claim`` timeout, or the step's ``step`` timeout passed (the step is given up)
CLAIM_TIMEOUT = "claim timeout"
STEP_TIMEOUT = "step timeout"
RESULTS = "orchestration/results/"  # + NNN/deliverable/...: an accepted child's files, copied
StepId = Annotated[str, Field(pattern=STEP_ID)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]


class Figure(Strict):
    """One routing figure an orchestrator cites: an agent, its score and its ask."""

    agent: ActorId
    score: float = Field(ge=0, le=100)
    price: Amount


class Decision(Strict):
    """``plan/NNN-<kind>.yaml``: one signed decision of the orchestrator."""

    schema_version: Literal[1] = 1
    mission: str
    number: int = Field(ge=1, le=999)
    kind: Literal["open", "fallback", "rework", "give_up"]
    step: StepId
    agent: ActorId | None = None
    price: Amount | None = None
    child: str | None = None
    reason: str = Field(default="", max_length=2000)
    routing: list[Figure] = Field(default_factory=list, max_length=50)


class Candidate(Strict):
    """An eligible agent for a step, as the platform ranked it."""

    agent: ActorId
    owner: str
    score: float = Field(ge=0, le=100)
    price: Amount


class StepRouting(Strict):
    """A step's child fee rate (at the parent's tier) and its candidates, best first."""

    fee_bp: int = Field(ge=0, le=10000)
    candidates: list[Candidate] = Field(default_factory=list)


class Routing(Strict):
    """``orchestration/routing.yaml``: what the platform offers each step."""

    schema_version: Literal[1] = 1
    mission: str
    steps: dict[StepId, StepRouting]


class Pinned(Strict):
    """An accepted child deliverable, pinned by the acceptance commit and file digests."""

    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
    files: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]]


class Outcome(Strict):
    """``orchestration/NNN.yaml``: what the hub did for decision NNN and what became of it.

    ``state`` of an opened child: ``open`` (working), ``failed`` (its DoD or review failed; it
    can be reworked), ``accepted`` (paid from the parent escrow), ``refunded`` (closed, its
    escrow back in the parent's, minus a kept fee). ``cost`` is what the parent escrow has
    given up to the child: price + fee while open or accepted, the kept fee once refunded.
    A rework or give_up outcome has state ``done``. ``note`` says why a child failed (``dod
    failed``, ``review failed``, ``run failed``) or why a decision could not be carried out.
    """

    schema_version: Literal[1] = 1
    mission: str
    decision: int = Field(ge=1, le=999)
    kind: Literal["open", "fallback", "rework", "give_up"]
    step: StepId
    child: str | None = None
    agent: ActorId | None = None
    price: Amount = 0
    fee: Amount = 0
    state: Literal["open", "failed", "accepted", "refunded", "done"]
    cost: Amount = 0
    deliverable: Pinned | None = None
    note: str = Field(default="", max_length=500)


@dataclass
class StepView:
    """What the plan so far says about one step."""

    step: Step
    attempts: int = 0  # opens, fallbacks and reworks decided
    agents: list[str] = field(default_factory=list)  # agents tried, in order
    live: Outcome | None = None  # the child currently open or failed (not yet closed)
    accepted: Outcome | None = None
    given_up: bool = False
    cost: int = 0

    @property
    def done(self) -> bool:
        return self.accepted is not None or self.given_up

    @property
    def failed(self) -> bool:
        """Given up without an accepted child."""
        return self.given_up and self.accepted is None

    def report_entry(self) -> dict[str, Any]:
        """This step's entry in the assembled report, as the records pin it (the reference
        orchestrator writes it; ``checks.workflow`` requires exactly it)."""
        rec = self.accepted
        pinned = rec.deliverable if rec else None
        return {"state": "accepted" if rec else "given_up", "contract": self.step.contract,
                "child": rec.child if rec else None, "agent": rec.agent if rec else None,
                "commit": pinned.commit if pinned else None,
                "files": dict(pinned.files) if pinned else {}}


@dataclass
class View:
    """The plan's bookkeeping: steps, the budget spent, and the next decision number."""

    contract: Contract
    budget: int
    steps: dict[str, StepView]
    decisions: dict[int, Decision]
    outcomes: dict[int, Outcome]

    @property
    def spent(self) -> int:
        return sum(s.cost for s in self.steps.values())

    @property
    def left(self) -> int:
        return self.budget - self.spent

    @property
    def next_number(self) -> int:
        return len(self.decisions) + 1

    @property
    def pending(self) -> list[int]:
        """Decisions without an outcome yet (the hub executes them in order)."""
        return sorted(n for n in self.decisions if n not in self.outcomes)

    def share(self, step: str) -> int:
        """The most the step's children may cost the parent in all."""
        return self.budget * self.steps[step].step.budget_share_bp // 10000

    def ready(self, step: str) -> bool:
        """Every step it needs is done: accepted, or given up with ``on_failure: continue``."""
        return all(self.steps[n].accepted is not None or (
            self.steps[n].given_up and self.steps[n].step.on_failure == "continue")
            for n in self.steps[step].step.needs)

    def blocked(self, step: str) -> bool:
        """A step it needs failed for good (given up, ``on_failure: fail``)."""
        return any((self.steps[n].failed and self.steps[n].step.on_failure == "fail")
                   or self.blocked(n) for n in self.steps[step].step.needs)

    @property
    def failed(self) -> bool:
        """The workflow cannot succeed: a step with ``on_failure: fail`` was given up."""
        return any(s.failed and s.step.on_failure == "fail" for s in self.steps.values())

    @property
    def complete(self) -> bool:
        return all(s.done for s in self.steps.values())


def view(contract: Contract, budget: int, decisions: dict[int, Decision],
         outcomes: dict[int, Outcome]) -> View:
    """Fold the decisions and their outcomes into per-step bookkeeping."""
    steps = {s.id: StepView(s) for s in contract.steps}
    for number in sorted(decisions):
        d = decisions[number]
        sv = steps.get(d.step)
        if sv is None:
            continue
        if d.kind in ("open", "fallback", "rework"):
            sv.attempts += 1
        if d.kind in ("open", "fallback") and d.agent:
            sv.agents.append(d.agent)
        if d.kind == "give_up":
            sv.given_up = True
        out = outcomes.get(number)
        if out is None:
            continue
        sv.cost += out.cost
        if out.kind in ("open", "fallback"):
            if out.note == STEP_TIMEOUT and out.state != "accepted":
                sv.given_up = True  # the hub gave the step up: its `step` timeout passed
            if out.state == "accepted":
                sv.accepted = out
            elif out.state in ("open", "failed"):
                sv.live = out
            elif sv.live is not None and sv.live.decision == number:
                sv.live = None
    return View(contract, budget, steps, dict(decisions), dict(outcomes))


def child_id(parent: str, number: int) -> str:
    """The child mission a decision opens: derived from the parent and the decision number,
    so executing a decision twice finds the child it already made."""
    return f"{parent}-d{number:03d}"


def child_fee(price: int, fee_bp: int) -> int:
    """A child's fee, rounded half up (the ledger's rule)."""
    return (price * fee_bp + 5000) // 10000
