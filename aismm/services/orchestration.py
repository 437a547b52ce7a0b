"""Workflow missions: the hub executes an orchestrator's judged decisions, exactly once.

A workflow mission (its contract has ``steps``) has one assigned agent, the orchestrator. The
hub writes ``orchestration/routing.yaml`` on its attempt when the mission opens; each
decision the orchestrator commits (``plan/NNN-<kind>.yaml``, judged by
:mod:`aismm.gate.plan`) is executed here: a child mission is created under an id derived from
the parent and the decision number and funded from the parent's escrow (keyed by the
decision), a rework request is filed, a step is given up. What became of it is written back
as ``orchestration/NNN.yaml`` by the platform, and every later change of a child (failed,
accepted and paid, refunded) updates that record. Each write wakes a hosted orchestrator; an
external one reads the records with ``git fetch``. See docs/protocol.md, "Workflows".
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from aismm.core.clock import duration_text
from aismm.core.contract import step_order
from aismm.core.errors import AismmError, GateRejection, MissionError
from aismm.core.model import dump_yaml
from aismm.core.plan import (
    CLAIM_TIMEOUT,
    DECISION_NAME,
    RESULTS,
    ROUTING,
    STEP_TIMEOUT,
    Candidate,
    Decision,
    Outcome,
    Pinned,
    Routing,
    StepRouting,
    View,
    child_id,
)
from aismm.core.refs import REFUNDED, SETTLED
from aismm.gate.plan import plan_view
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import delivery, lifecycle, market, mission, settlement
from aismm.services.attempts import write_to_attempt
from aismm.services.mission import ACCEPTED, ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import MissionPolicy

__all__ = ["is_workflow", "on_child_event", "on_parent_event", "plan_of", "resume", "start",
           "sync", "timers", "tree", "wake"]


def _crash_point(name: str) -> None:
    """Test hook: ``AISMM_CRASH_AT=<name>`` kills the process here (crash-matrix tests)."""
    if os.environ.get("AISMM_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def is_workflow(policy: MissionPolicy) -> bool:
    """Whether a mission runs a workflow contract."""
    return bool(policy.contract.steps)


def _orchestrator(policy: MissionPolicy) -> str:
    return policy.doc.assignment.agents[0]


def _doc(model: Any) -> bytes:
    return dump_yaml(model.model_dump(mode="json", exclude_none=False)).encode()


def _closed(repo: Repo) -> bool:
    return repo.ref(SETTLED) is not None or repo.ref(REFUNDED) is not None


def routing_table(hub: Hub, policy: MissionPolicy) -> Routing:
    """Each step's child fee rate at the parent's tier and its eligible agents, best first (the
    routing score of docs/reputation.md), never the orchestrator or an agent of the client's."""
    doc = policy.doc
    steps: dict[str, StepRouting] = {}
    asks = registry.manifests(hub)
    for step in policy.contract.steps:
        contract, _files, _sha = registry.resolve_contract(hub, step.contract)
        rate = mission.fee_rate(hub, contract, doc.tier)
        rows = market.ranking(hub, step.contract, client=doc.client)
        candidates = [Candidate(agent=r.agent, owner=r.inputs["owner"], score=r.score,
                                price=asks[r.agent].price)
                      for r in rows if isinstance(r, market.RankedRow)
                      and r.agent != _orchestrator(policy)
                      and step.contract in asks[r.agent].contracts]
        steps[step.id] = StepRouting(fee_bp=rate, candidates=candidates)
    return Routing(mission=doc.id, steps=steps)


def start(hub: Hub, mission_id: str) -> list[str]:
    """A workflow mission opened: write its routing table (which wakes the orchestrator)."""
    repo, policy = open_mission(hub, mission_id)
    agent = _orchestrator(policy)
    tip = repo.ref(f"{ATTEMPT}{agent}")
    if tip is None or repo.read(tip, ROUTING) is not None or _closed(repo):
        return []
    table = routing_table(hub, policy)
    write_to_attempt(hub, repo, agent, {ROUTING: _doc(table)},
                     "Routing table for the workflow\n", hub.config.platform)
    ranked = sum(len(s.candidates) for s in table.steps.values())
    return [f"aismm: {mission_id}: workflow opened for {agent} ({len(table.steps)} steps, "
            f"{ranked} ranked candidates)"]


def on_parent_event(hub: Hub, mission_id: str, old: str | None, new: str) -> list[str]:
    """A workflow's attempt moved: execute new decisions; wake the orchestrator after the
    platform wrote a record."""
    repo, _policy = open_mission(hub, mission_id)
    before = repo.flatten(old) if old else {}
    after = repo.flatten(new)
    changed = {p for p, e in after.items() if before.get(p) != e}
    lines: list[str] = []
    if any(DECISION_NAME.match(p) for p in changed):
        lines += sync(hub, mission_id)
    if any(p.startswith("orchestration/") for p in changed):
        lines += wake(hub, mission_id)
    return lines


def on_child_event(hub: Hub, mission_id: str) -> list[str]:
    """A child mission's ref moved: bring its parent's records up to date."""
    _repo, policy = open_mission(hub, mission_id)
    return sync(hub, policy.doc.parent) if policy.doc.parent else []


def sync(hub: Hub, mission_id: str) -> list[str]:
    """Execute the pending decision (once) and refresh the records of the live children; write
    what changed in one platform commit. Idempotent: a repeat after a crash finishes the job."""
    repo, policy = open_mission(hub, mission_id)
    if not is_workflow(policy) or _closed(repo):
        return []
    agent = _orchestrator(policy)
    tip = repo.ref(f"{ATTEMPT}{agent}")
    if tip is None:
        return []
    plan, routing = plan_view(repo, policy, tip)
    if routing is None:
        return start(hub, mission_id)
    writes: dict[str, bytes | None] = {}
    lines: list[str] = []
    outcomes = dict(plan.outcomes)
    for number in plan.pending[:1]:
        done, more = _execute(hub, policy, plan, plan.decisions[number])
        lines += more
        outcomes.update(done)
    for number, out in sorted(outcomes.items()):
        if out.child and out.state in ("open", "failed"):
            fresh, results, more = _child_outcome(hub, out)
            lines += more
            if fresh != out:
                outcomes[number] = fresh
                writes.update(results)
    for number, out in outcomes.items():
        if plan.outcomes.get(number) != out:
            writes[f"orchestration/{number:03d}.yaml"] = _doc(out)
    if writes:
        states = ", ".join(f"{n:03d} {o.state}" for n, o in sorted(outcomes.items())
                           if plan.outcomes.get(n) != o)
        write_to_attempt(hub, repo, agent, writes, f"Workflow records: {states}\n",
                         hub.config.platform)
        lines.append(f"aismm: {mission_id}: workflow records {states}")
    tip = repo.ref(f"{ATTEMPT}{agent}") or tip
    if plan_view(repo, policy, tip)[0].failed:
        lines += settlement.refund(hub, mission_id, "failed")
    return lines


def resume(hub: Hub) -> list[str]:
    """Finish every open workflow's pending work (a decision whose event failed or was lost):
    :func:`sync` on each; idempotent (``aismm process`` runs it after the outbox)."""
    lines: list[str] = []
    for mission_id in hub.mission_ids():
        try:
            repo, policy = open_mission(hub, mission_id)
            if is_workflow(policy) and not _closed(repo):
                lines += sync(hub, mission_id)
                lines += _offer_again(hub, plan_of(hub, mission_id))
        except AismmError as exc:  # one workflow's trouble must not stop the others
            lines.append(f"aismm: {mission_id}: workflow not resumed ({str(exc).splitlines()[0]})")
    return lines


def timers(hub: Hub) -> list[str]:
    """Apply the workflow steps' ``claim`` and ``step`` timeouts at the hub clock's time
    (``aismm tick`` runs it after the missions' own timers); idempotent."""
    lines: list[str] = []
    for mission_id in hub.mission_ids():
        try:
            repo, policy = open_mission(hub, mission_id)
            if is_workflow(policy) and not _closed(repo):
                lines += _timeouts(hub, mission_id)
        except AismmError as exc:  # one workflow's trouble must not stop the others
            lines.append(f"aismm: {mission_id}: workflow timers not applied "
                         f"({str(exc).splitlines()[0]})")
    return lines


def _timeouts(hub: Hub, mission_id: str) -> list[str]:
    """One workflow: a live child whose agent pushed nothing within ``claim`` of its creation
    is refunded (note ``claim timeout``); a step not accepted ``step`` after its first child
    was created has its live child refunded and is given up (its last child's record notes
    ``step timeout``). The records are written in one platform commit."""
    lines = sync(hub, mission_id)  # the records up to date first (e.g. a child just expired)
    repo, policy = open_mission(hub, mission_id)
    agent = _orchestrator(policy)
    tip = repo.ref(f"{ATTEMPT}{agent}")
    if tip is None or _closed(repo):
        return lines
    plan = plan_view(repo, policy, tip)[0]
    if plan.pending:
        return lines  # a decision in flight: the next tick judges its child
    now = hub.clock.now()
    changed: dict[int, Outcome] = {}
    for sid, sv in plan.steps.items():
        if sv.done:
            continue
        children = [o for _n, o in sorted(plan.outcomes.items())
                    if o.step == sid and o.kind in ("open", "fallback") and o.child]
        if not children:
            continue
        limits = sv.step.retry.timeouts
        first = open_mission(hub, children[0].child or "")[1].doc.created
        last = children[-1]
        if now - first >= limits.step:
            closed = last
            if last.state in ("open", "failed"):
                closed, more = _close_child(hub, last, "deadline")
                lines += more
            changed[last.decision] = closed.model_copy(update={"note": STEP_TIMEOUT})
            lines.append(f"aismm: {mission_id}: step {sid} given up (its step timeout "
                         f"{duration_text(limits.step)} passed)")
            continue
        live = sv.live
        if live is None or live.state != "open" or not live.child or not live.agent:
            continue
        child_repo, cp = open_mission(hub, live.child)
        if child_repo.ref(f"{ATTEMPT}{live.agent}") == cp.main and \
                now - cp.doc.created >= limits.claim:
            closed, more = _close_child(hub, live, "deadline")
            changed[live.decision] = closed.model_copy(update={"note": CLAIM_TIMEOUT})
            lines += [*more, f"aismm: {mission_id}: step {sid}: {live.agent} never claimed "
                      f"{live.child} (claim timeout {duration_text(limits.claim)})"]
    writes: dict[str, bytes | None] = {f"orchestration/{n:03d}.yaml": _doc(o)
                                       for n, o in changed.items() if plan.outcomes.get(n) != o}
    if writes:
        states = ", ".join(f"{n:03d} {changed[n].note}" for n in sorted(changed))
        write_to_attempt(hub, repo, agent, writes, f"Workflow timers: {states}\n",
                         hub.config.platform)
    tip = repo.ref(f"{ATTEMPT}{agent}") or tip
    if plan_view(repo, policy, tip)[0].failed:
        lines += settlement.refund(hub, mission_id, "failed")
    return lines


def _offer_again(hub: Hub, plan: View) -> list[str]:
    """Run the hosted agent of an open child that never ran (its creation's event was lost):
    nothing delivered, no failed run, no event of the child still pending."""
    lines: list[str] = []
    for out in plan.outcomes.values():
        if not out.child or not out.agent or out.state != "open" or \
                not delivery.is_hosted(hub, out.agent):
            continue
        with Store(hub.db_path) as store:
            if any(e.status == "pending" for e in store.events(f"missions/{out.child}.git")):
                continue
        attempt = next((a for a in lifecycle.status(hub, out.child)["attempts"]
                        if a["agent"] == out.agent), None)
        if attempt is not None and attempt["state"] == "assigned" and attempt["failure"] is None:
            lines += delivery.dispatch(hub, out.child, [out.agent])
    return lines


def _execute(hub: Hub, policy: MissionPolicy, plan: View, decision: Decision
             ) -> tuple[dict[int, Outcome], list[str]]:
    """Carry out one judged decision; the records it creates or changes."""
    parent = policy.doc.id
    sv = plan.steps[decision.step]
    changed: dict[int, Outcome] = {}
    lines: list[str] = []
    if decision.kind in ("fallback", "give_up") and sv.live is not None:
        closed, more = _close_child(hub, sv.live, "give_up" if decision.kind == "give_up"
                                    else "failed")
        changed[sv.live.decision] = closed
        lines += more
        _crash_point("orch-after-close")
    base = {"mission": parent, "decision": decision.number, "kind": decision.kind,
            "step": decision.step}
    if decision.kind == "give_up":
        changed[decision.number] = Outcome(**base, state="done", note=decision.reason[:500])
        return changed, [*lines, f"aismm: {parent}: step {decision.step} given up"]
    if decision.kind == "rework":
        live = sv.live
        if live is None or not live.child or not live.agent:
            raise MissionError(f"{parent}: plan/{decision.number:03d}: no failed child to "
                               "rework; the gate should have refused it (report this)")
        marker = f"(decision plan/{decision.number:03d} of {parent})"
        child_repo, _child_policy = open_mission(hub, live.child)
        tip = child_repo.ref(f"{ATTEMPT}{live.agent}") or ""
        filed = any(marker.encode() in (child_repo.read(tip, p) or b"")
                    for p in child_repo.flatten(tip) if p.startswith("requests/"))
        if not filed:
            reason = f"{decision.reason or 'the review failed; fix what it names'} {marker}"
            lines += settlement.request(hub, live.child, live.agent, "rework", reason)
        changed[decision.number] = Outcome(**base, child=live.child, agent=live.agent,
                                           state="done")
        return changed, lines
    if decision.agent is None or decision.price is None:
        raise MissionError(f"{parent}: plan/{decision.number:03d}: no agent or price; the gate "
                           "should have refused it (report this)")
    child = child_id(parent, decision.number)
    step = sv.step
    try:
        if not hub.mission_path(child).is_dir():
            with tempfile.TemporaryDirectory(prefix="aismm-child-") as tmp:
                _child_inputs(hub, policy, plan, decision.step, Path(tmp))
                created = mission.create(
                    hub, contract_ref=step.contract, client=hub.config.platform,
                    inputs=Path(tmp), price=decision.price, tier=policy.doc.tier,
                    agents=[decision.agent], deadline=duration_text(step.retry.timeouts.attempt),
                    parent=parent, mission_id=child,
                    funding_cause=f"decision:{parent}:{decision.number:03d}")
            lines.append(f"aismm: {parent}: step {decision.step}: opened {child} for "
                         f"{decision.agent} at {created.doc.price} + fee {created.doc.fee}")
            _crash_point("orch-after-child")
        _repo, cp = open_mission(hub, child)
    except AismmError as exc:  # refused (capacity, listing...): an attempt spent, nothing paid
        note = str(exc).splitlines()[0]
        changed[decision.number] = Outcome(**base, agent=decision.agent, state="refunded",
                                           note=note[:500])
        return changed, [*lines, f"aismm: {parent}: step {decision.step}: could not open a "
                         f"child ({note})"]
    total = cp.doc.price + cp.doc.fee
    changed[decision.number] = Outcome(**base, child=child, agent=decision.agent,
                                       price=cp.doc.price, fee=cp.doc.fee, state="open",
                                       cost=total)
    return changed, lines


def _child_inputs(hub: Hub, policy: MissionPolicy, plan: View, step_id: str, dest: Path
                  ) -> None:
    """Copy a step's inputs into ``dest``: from the parent's inputs on main or an earlier
    step's accepted deliverable (read at its acceptance commit)."""
    step = plan.steps[step_id].step
    parent_repo = Repo(hub.mission_path(policy.doc.id))
    for target, source in step.inputs.items():
        if ":" in source:
            origin, path = source.split(":", 1)
            accepted = plan.steps[origin].accepted
            if accepted is None or accepted.child is None or accepted.deliverable is None:
                raise MissionError(f"step {step_id}: input {target}: step {origin} has no "
                                   "accepted deliverable; open the step once it is accepted")
            data = Repo(hub.mission_path(accepted.child)).read(accepted.deliverable.commit, path)
        else:
            data = parent_repo.read(policy.main, source)
        if data is None:
            raise MissionError(f"step {step_id}: input {target}: {source} not found; fix the "
                               "workflow's inputs")
        out = dest / target.removeprefix("inputs/")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)


def _close_child(hub: Hub, out: Outcome, reason: str) -> tuple[Outcome, list[str]]:
    """Refund a live child into the parent escrow; its record with the kept fee as cost."""
    if out.child is None:
        return out, []
    lines = settlement.refund(hub, out.child, reason)
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(out.child)
    kept = closure.fee if closure is not None else 0
    return out.model_copy(update={"state": "refunded", "cost": kept}), lines


def _child_outcome(hub: Hub, out: Outcome
                   ) -> tuple[Outcome, dict[str, bytes | None], list[str]]:
    """What has become of a live child: accepted children are accepted and paid here."""
    if out.child is None or out.agent is None:
        return out, {}, []
    child, agent = out.child, out.agent
    lines: list[str] = []
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(child)
    if closure is None:
        st = lifecycle.status(hub, child)
        if st["state"] == "awaiting_acceptance":
            lines += settlement.accept(hub, child, agent, as_actor=hub.config.platform)
            _crash_point("orch-after-accept")
            st = lifecycle.status(hub, child)
        if st["state"] == "accepted":
            lines += settlement.settle(hub, child)
        elif st["state"] == "expired":
            closed, more = _close_child(hub, out, "deadline")
            return closed, {}, [*lines, *more]
        else:
            attempt = next((a for a in st["attempts"] if a["agent"] == agent), None)
            why = ""
            if attempt is not None and attempt["state"] == "failed":
                why = "dod failed" if attempt["dod"] == "fail" else "run failed"
            elif attempt is not None and attempt["state"] != "rework" and \
                    attempt["dod"] == "pass" and any(
                        v["current"] and v["verdict"] == "fail"
                        for rid, v in attempt["verdicts"].items() if rid != hub.config.platform):
                why = "review failed"
            return out.model_copy(update={"state": "failed" if why else "open", "note": why}), \
                {}, lines
        with Ledger(hub.db_path, hub.clock) as ledger:
            closure = ledger.closure(child)
    if closure is None:
        return out, {}, lines
    if closure.kind == "refunded":
        return out.model_copy(update={"state": "refunded", "cost": closure.fee}), {}, lines
    repo = Repo(hub.mission_path(child))
    merge = repo.ref(ACCEPTED) or ""
    files = {p: repo.read(merge, p) or b"" for p in repo.flatten(merge)
             if p.startswith("deliverable/")}
    pinned = Pinned(commit=merge, files={p: hashlib.sha256(d).hexdigest()
                                         for p, d in sorted(files.items())})
    results: dict[str, bytes | None] = {f"{RESULTS}{out.decision:03d}/{p}": d
                                        for p, d in files.items()}
    return out.model_copy(update={"state": "accepted", "deliverable": pinned}), results, lines


def wake(hub: Hub, mission_id: str) -> list[str]:
    """Run a hosted orchestrator once on its attempt; commit the one decision it wrote (or its
    assembled deliverable). External orchestrators push their own."""
    repo, policy = open_mission(hub, mission_id)
    agent = _orchestrator(policy)
    tip = repo.ref(f"{ATTEMPT}{agent}")
    man = registry.manifests(hub).get(agent)
    if tip is None or man is None or not delivery.is_hosted(hub, agent) or _closed(repo) \
            or repo.ref(ACCEPTED) != policy.main:
        return []
    env = {"AISMM_ACTOR": agent, "AISMM_MISSION": mission_id,
           "AISMM_CONTRACT": policy.doc.contract.ref, "AISMM_ROLE": "orchestrator"}
    ok, detail, changed = delivery.run_on_attempt(hub, man, repo, tip, env)
    if not ok:
        return [f"aismm: {mission_id}: orchestrator {agent} failed ({detail[:200]})"]
    allowed = {p: d for p, d in changed.items() if p.startswith(("plan/", "deliverable/"))}
    if not allowed:
        return []
    what = next((p for p in sorted(allowed) if p.startswith("plan/")), "deliverable")
    try:
        new = write_to_attempt(hub, repo, agent, allowed, f"Decide: {what}\n", agent)
    except GateRejection as exc:  # e.g. the plan moved on meanwhile: the next wake decides again
        first = str(exc.problems[0]).removeprefix("aismm: ") if exc.problems else str(exc)
        return [f"aismm: {mission_id}: {agent}'s {what} refused by the gate ({first})"]
    return [f"aismm: {mission_id}: {agent} committed {what} ({new[:12]})"]


def plan_of(hub: Hub, mission_id: str) -> View:
    """The plan bookkeeping a workflow mission's orchestrator attempt holds now."""
    repo, policy = open_mission(hub, mission_id)
    tip = repo.ref(f"{ATTEMPT}{_orchestrator(policy)}") or policy.main
    return plan_view(repo, policy, tip)[0]


def tree(hub: Hub, mission_id: str) -> dict[str, Any]:
    """A workflow mission, its steps and one entry per child mission (id, step, agent, state
    and money), read from the parent's records and the ledger."""
    repo, policy = open_mission(hub, mission_id)
    st = lifecycle.status(hub, mission_id)
    out: dict[str, Any] = {"id": mission_id, "contract": policy.doc.contract.ref,
                           "state": st["state"], "client": policy.doc.client,
                           "parent": policy.doc.parent, "price": policy.doc.price,
                           "fee": policy.doc.fee, "escrow": st["escrow"], "steps": [],
                           "children": []}
    if not is_workflow(policy):
        return out
    agent = _orchestrator(policy)
    tip = repo.ref(f"{ATTEMPT}{agent}") or policy.main
    plan, _routing = plan_view(repo, policy, tip)
    out["orchestrator"] = agent
    out["budget"] = {"total": plan.budget, "spent": plan.spent, "left": plan.left}
    for sid in step_order(policy.contract.steps):
        sv = plan.steps[sid]
        state = "accepted" if sv.accepted else "given_up" if sv.given_up else \
            sv.live.state if sv.live else "blocked" if plan.blocked(sid) else \
            "ready" if plan.ready(sid) and not sv.attempts else \
            "waiting" if not plan.ready(sid) else "retry"
        out["steps"].append({"id": sid, "contract": sv.step.contract, "state": state,
                             "attempts": sv.attempts, "max_attempts": sv.step.retry.max_attempts,
                             "cost": sv.cost, "share": plan.share(sid)})
    with Ledger(hub.db_path, hub.clock) as ledger:
        for number, rec in sorted(plan.outcomes.items()):
            if rec.child is None or rec.kind not in ("open", "fallback"):
                continue
            closure = ledger.closure(rec.child)
            out["children"].append({
                "id": rec.child, "step": rec.step, "decision": number, "agent": rec.agent,
                "state": rec.state, "price": rec.price, "fee": rec.fee, "cost": rec.cost,
                "escrow": ledger.balance(f"escrow:{rec.child}"),
                "closure": closure.kind if closure else None,
                "paid": closure.provider if closure and closure.kind == "settled" else 0})
    return out


