"""Random workflows (hypothesis): DAGs of 1-6 steps, random candidates, random failure scripts,
run by the reference orchestrator's policy against the gate's plan rules and the real ledger.

Each example plays the hub's part the way :mod:`aismm.services.orchestration` does (a decision
opens a child funded from the parent's escrow, a fallback or give-up refunds the live child
into it, an accepted child is paid from its own escrow, the parent settles or is refunded at
the end) on a fresh SQLite ledger, without git or the sandbox, so hundreds of runs take
seconds. After every step: every decision the orchestrator wrote passes
:func:`aismm.gate.plan.decision_problem`, ``ledger check`` is clean (the tree invariant
included), and the plan's bookkeeping matches the ledger; the run ends within the policy's
bounds with every escrow empty.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aismm.agents.orchestrator import decide
from aismm.core.actor import Actor, Manifest, Runtime
from aismm.core.clock import FixedClock
from aismm.core.contract import Contract
from aismm.core.document import Assignment, ContractPin, MissionDoc
from aismm.core.plan import (
    Candidate,
    Decision,
    Outcome,
    Routing,
    StepRouting,
    child_fee,
    child_id,
    view,
)
from aismm.core.signing import generate_key
from aismm.gate.plan import decision_problem
from aismm.infra.ledger import Ledger

QUALITY = Path(__file__).resolve().parent.parent / "contracts" / "module_quality"
BASE = yaml.safe_load((QUALITY / "contract.yaml").read_text())
AGENTS = [f"agent-{i}" for i in range(5)]
KEYS = {a: generate_key().public_line for a in AGENTS}
SCRIPTS = ("good", "bad", "lazy", "lazy-then-good", "silent")
PARENT = "flow-00000000"
CLIENT = "carol"
RATES = {"T0": 200, "T1": 1000, "T2": 2500}


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    shares = [draw(st.integers(1000, 4000)) for _ in range(n)]
    scale = max(1.0, sum(shares) / 10000)
    steps = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        steps.append({
            "id": f"s{i}", "contract": "contract.code_review@1.0.0",
            "needs": draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2))
            if earlier else [],
            "retry": {"max_attempts": draw(st.integers(1, 3)), "fallback": draw(st.booleans())},
            "budget_share_bp": max(1, int(shares[i] / scale)),
            "max_price": draw(st.integers(150, 600)),
            "on_failure": draw(st.sampled_from(["fail", "continue"]))})
    candidates = {
        s["id"]: draw(st.lists(st.tuples(st.sampled_from(AGENTS), st.integers(50, 300)),
                               unique_by=lambda c: c[0], min_size=1, max_size=4))
        for s in steps}
    scripts = {(s["id"], a): draw(st.sampled_from(SCRIPTS)) for s in steps for a in AGENTS}
    return {"steps": steps, "candidates": candidates, "scripts": scripts,
            "tier": draw(st.sampled_from(["T0", "T1", "T2"])),
            "price": draw(st.integers(1000, 6000))}


def _setup(flow: dict[str, Any]) -> tuple[Contract, MissionDoc, Routing, dict[str, Actor],
                                          dict[str, Manifest]]:
    contract = Contract.model_validate({**BASE, "steps": flow["steps"]})
    tier = flow["tier"]
    doc = MissionDoc(id=PARENT, contract=ContractPin(ref=contract.ref, sha256="0" * 64),
                     client=CLIENT, tier=tier, price=flow["price"],
                     fee=child_fee(flow["price"], RATES[tier]), fee_bp=RATES[tier],
                     created="2026-01-01T00:00:00Z", deadline="2026-01-04T00:00:00Z",
                     assignment=Assignment(agents=["ref-orchestrator"]), arbiter="arbiter")
    routing = Routing(mission=PARENT, steps={
        sid: StepRouting(fee_bp=RATES[tier], candidates=[
            Candidate(agent=a, owner=f"{a}-co", score=90 - 10 * rank, price=ask)
            for rank, (a, ask) in enumerate(cands)])
        for sid, cands in flow["candidates"].items()})
    actors = {a: Actor(id=a, roles=["specialist"], owner=f"{a}-co", key=KEYS[a])
              for a in AGENTS}
    manifests = {a: Manifest(id=a, owner=f"{a}-co", roles=["specialist"],
                             contracts=["contract.code_review@1.0.0"], price=50,
                             runtime=Runtime(kind="git")) for a in AGENTS}
    return contract, doc, routing, actors, manifests


class Hub:
    """The hub's part of a run, on a real ledger (orchestration.py's rules, without git)."""

    def __init__(self, ledger: Ledger, doc: MissionDoc, scripts: dict[tuple[str, str], str]):
        self.ledger, self.doc, self.scripts = ledger, doc, scripts
        self.decisions: dict[int, Decision] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.reworked: set[str] = set()

    def kept(self, fee: int, reason: str) -> int:
        return 0 if reason == "cancel" or self.doc.tier == "T2" else fee

    def close(self, number: int, reason: str) -> None:
        out = self.outcomes[number]
        assert out.child is not None
        kept = self.kept(out.fee, reason)
        self.ledger.refund_child(out.child, "platform", PARENT, kept, f"{reason}:{out.child}")
        self.outcomes[number] = out.model_copy(update={"state": "refunded", "cost": kept})

    def execute(self, d: Decision, live: Outcome | None) -> None:
        base = {"mission": PARENT, "decision": d.number, "kind": d.kind, "step": d.step}
        if d.kind in ("fallback", "give_up") and live is not None:
            self.close(live.decision, "give_up" if d.kind == "give_up" else "failed")
        if d.kind in ("rework", "give_up"):
            if d.kind == "rework" and live is not None and live.child:
                self.reworked.add(live.child)
                self.outcomes[live.decision] = live.model_copy(update={"state": "open"})
            self.outcomes[d.number] = Outcome(**base, state="done")
            return
        assert d.agent is not None and d.price is not None
        child = child_id(PARENT, d.number)
        fee = child_fee(d.price, self.doc.fee_bp)
        self.ledger.fund_child(child, PARENT, d.price, fee, f"decision:{PARENT}:{d.number:03d}")
        self.outcomes[d.number] = Outcome(**base, child=child, agent=d.agent, price=d.price,
                                          fee=fee, state="open", cost=d.price + fee)

    def work(self, number: int) -> None:
        """The live child of decision ``number`` finishes its current attempt by its script."""
        out = self.outcomes[number]
        assert out.child is not None and out.agent is not None
        script = self.scripts[(out.step, out.agent)]
        if script == "lazy-then-good":
            script = "good" if out.child in self.reworked else "lazy"
        if script == "good":
            self.ledger.settle_child(out.child, "platform", PARENT, f"{out.agent}-co", out.price,
                                     out.fee, f"merge:{out.child}")
            self.outcomes[number] = out.model_copy(update={"state": "accepted"})
        elif script == "silent":
            self.close(number, "deadline")
        else:
            why = "dod failed" if script == "bad" else "review failed"
            self.outcomes[number] = out.model_copy(update={"state": "failed", "note": why})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=workflows())
def test_random_workflows_conserve_money_and_terminate(flow: dict[str, Any]) -> None:
    contract, doc, routing, actors, manifests = _setup(flow)
    bound = sum(s.retry.max_attempts + 1 for s in contract.steps) + 1
    with tempfile.TemporaryDirectory() as tmp, \
            Ledger(Path(tmp) / "hub.db", FixedClock("2026-01-01T00:00:00Z")) as ledger:
        ledger.deposit(CLIENT, 10_000, cause="seed")
        ledger.fund(PARENT, CLIENT, doc.price, doc.fee, cause="main")
        hub = Hub(ledger, doc, flow["scripts"])
        for _turn in range(4 * bound):
            plan = view(contract, doc.price, hub.decisions, hub.outcomes)
            assert ledger.check() == []
            assert ledger.balance(f"escrow:{PARENT}") == doc.price + doc.fee - plan.spent
            d = decide(doc, plan, routing)
            if d is not None:
                assert decision_problem(doc, plan, routing, d, d.number, d.kind, actors,
                                        manifests) is None, d
                hub.decisions[d.number] = d
                hub.execute(d, plan.steps[d.step].live)
                continue
            if plan.complete or plan.failed:
                break
            working = [o.decision for o in hub.outcomes.values()
                       if o.child and o.state == "open"]
            assert working, "the orchestrator waits but no child is working"
            hub.work(working[0])
        else:
            pytest.fail("the run did not end")
        plan = view(contract, doc.price, hub.decisions, hub.outcomes)
        for kind in sorted({d.kind for d in hub.decisions.values()}):
            event(f"decided {kind}")
        event("failed" if plan.failed else "complete")
        assert len(hub.decisions) <= bound
        for sv in plan.steps.values():
            assert sv.attempts <= sv.step.retry.max_attempts
            assert sv.cost <= plan.share(sv.step.id)
        assert plan.spent <= doc.price
        for number, out in list(hub.outcomes.items()):  # the parent closes its children first
            if out.child and out.state in ("open", "failed"):
                hub.close(number, "cancel")
        held = ledger.balance(f"escrow:{PARENT}")
        if plan.failed:  # refunded by tier: T0/T1 keep the fee (at most what is left)
            kept = 0 if doc.tier == "T2" else min(doc.fee, held)
            ledger.refund(PARENT, CLIENT, kept, cause="failed:main")
        else:  # accepted: the orchestrator's provider earns what its children left
            ledger.settle(PARENT, CLIENT, "acme", held - doc.fee, doc.fee, cause="merge")
        assert ledger.check() == []
        assert all(v == 0 for k, v in ledger.balances().items() if k.startswith("escrow:"))
        paid = sum(v for k, v in ledger.balances().items()
                   if k.startswith(("provider:", "platform:")))
        assert paid + ledger.balance(f"client:{CLIENT}") == 10_000
