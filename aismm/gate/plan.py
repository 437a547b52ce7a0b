"""The gate's rules for workflow plans: the orchestrator's decisions and the hub's records.

On a workflow mission (a contract with ``steps``) the assigned orchestrator may add, besides
``deliverable/**``, one decision file ``plan/NNN-<kind>.yaml`` per commit; the platform writes
``orchestration/**``. A decision is judged against the plan as its parent commit holds it
(:func:`aismm.core.plan.view`): numbering, the previous decision executed, the step known and
ready, the attempt budget, the agent a ranked candidate and an active registered specialist,
the price within the step's maximum, its share and the budget left (docs/protocol.md,
"Workflows").
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from aismm.core.actor import Actor, Manifest
from aismm.core.contract import Contract
from aismm.core.document import MissionDoc
from aismm.core.model import describe_validation, load_document, load_yaml
from aismm.core.plan import (
    DECISION_NAME,
    OUTCOME_NAME,
    RESULTS,
    ROUTING,
    Decision,
    Outcome,
    Routing,
    View,
    child_fee,
    view,
)
from aismm.gate.base import Judge
from aismm.infra.git import Entry, Repo
from aismm.state.policy import MissionPolicy

MAX_DECISION_BYTES = 65536

__all__ = ["MAX_DECISION_BYTES", "decision_problem", "judge_decision_commit", "judge_record",
           "plan_view", "read_plan"]


def read_plan(repo: Repo, commit: str, contract: Contract, budget: int
              ) -> tuple[View, Routing | None]:
    """The plan bookkeeping and the platform's routing as a commit holds them (unreadable files
    are skipped: each was judged when it was written)."""
    files = repo.flatten(commit)
    decisions: dict[int, Decision] = {}
    outcomes: dict[int, Outcome] = {}
    routing = None
    for path, entry in files.items():
        try:
            if (m := DECISION_NAME.match(path)) is not None:
                decisions[int(m.group(1))] = load_document(Decision, entry.oid, repo.blob, path)
            elif (m := OUTCOME_NAME.match(path)) is not None:
                outcomes[int(m.group(1))] = load_document(Outcome, entry.oid, repo.blob, path)
            elif path == ROUTING:
                routing = load_document(Routing, entry.oid, repo.blob, path)
        except ValueError:
            continue
    return view(contract, budget, decisions, outcomes), routing


def plan_view(repo: Repo, policy: MissionPolicy, commit: str) -> tuple[View, Routing | None]:
    """:func:`read_plan` for a mission's attempt commit."""
    return read_plan(repo, commit, policy.contract, policy.doc.price)


def judge_record(j: Judge, ref: str, path: str, entry: Entry) -> None:
    """A platform write under ``orchestration/``: a routing table or an outcome record."""
    if path == ROUTING:
        j.document(ref, path, entry.oid, Routing)
    elif OUTCOME_NAME.match(path):
        j.document(ref, path, entry.oid, Outcome)
    elif not path.startswith(RESULTS):
        j.reject(ref, path, "the platform writes only orchestration/routing.yaml, "
                 "orchestration/NNN.yaml and orchestration/results/ here", "drop this change")


def judge_decision_commit(j: Judge, policy: MissionPolicy, ref: str, oid: str,
                          added: dict[str, Entry], changed: list[str]) -> None:
    """The orchestrator's commit: at most one new decision file, and a sound one."""
    for path in changed:
        j.reject(ref, path, "decisions are never changed or removed",
                 "add a new plan/NNN-<kind>.yaml instead")
    if len(added) > 1:
        j.reject(ref, f"commit {oid[:12]}", f"adds {len(added)} decisions",
                 "commit one plan/NNN-<kind>.yaml per commit")
        return
    for path, entry in added.items():
        _decision(j, policy, ref, oid, path, entry)


def _decision(j: Judge, policy: MissionPolicy, ref: str, oid: str, path: str,
              entry: Entry) -> None:
    match = DECISION_NAME.match(path)
    if match is None:
        j.reject(ref, path, "a decision is named plan/NNN-<open|fallback|rework|give_up>.yaml",
                 "name it like plan/001-open.yaml")
        return
    if j.repo.blob_size(entry.oid) > MAX_DECISION_BYTES:
        j.reject(ref, path, f"larger than {MAX_DECISION_BYTES} bytes", "write a short decision")
        return
    try:
        decision = Decision.model_validate(load_yaml(j.repo.blob(entry.oid), path))
    except ValueError as exc:
        first = describe_validation(exc)[0] if isinstance(exc, ValidationError) else \
            str(exc).split(": ", 1)[-1]
        j.reject(ref, path, f"invalid decision ({first})", "fix it (see docs/protocol.md, "
                 "Workflows)")
        return
    parent = j.repo.commit(oid).parents[0]
    plan, routing = plan_view(j.repo, policy, parent)
    problem = decision_problem(policy.doc, plan, routing, decision, int(match.group(1)),
                               match.group(2), j.registry.actors, j.registry.manifests)
    if problem is not None:
        j.reject(ref, path, *problem)


def decision_problem(doc: MissionDoc, plan: View, routing: Routing | None, decision: Decision,
                     number: int, kind: str, actors: Mapping[str, Actor],
                     manifests: Mapping[str, Manifest]) -> tuple[str, str] | None:
    """Why a decision named ``plan/<number>-<kind>.yaml`` is refused against the plan so far:
    ``(what, fix)``, or None when it is sound. Pure: the gate and the tests call it."""
    if number != plan.next_number or decision.number != number:
        return (f"decision number must be {plan.next_number:03d}",
                "number decisions consecutively, in the file name and in `number`")
    if decision.kind != kind:
        return "kind does not match the file name", "make them agree"
    if decision.mission != doc.id:
        return f"names mission {decision.mission}", f"write decisions for {doc.id}"
    if plan.pending:
        return (f"decision {plan.pending[0]:03d} has not been executed yet",
                f"wait for orchestration/{plan.pending[0]:03d}.yaml, then decide again")
    if plan.failed:
        return ("the workflow has failed (a step with on_failure: fail was given up)",
                "decide nothing more; the mission is refunded")
    sv = plan.steps.get(decision.step)
    if sv is None:
        return (f"step {decision.step} is not a step of {plan.contract.ref}",
                f"use one of {', '.join(plan.steps)}")
    if sv.done:
        return (f"step {decision.step} is already "
                f"{'accepted' if sv.accepted else 'given up'}", "decide on another step")
    if kind == "give_up":
        return None
    if sv.attempts >= sv.step.retry.max_attempts:
        return (f"step {decision.step} has used its {sv.step.retry.max_attempts} attempt(s)",
                "give the step up (plan/NNN-give_up.yaml)")
    if kind == "rework":
        if sv.live is None or sv.live.state != "failed" or decision.child != sv.live.child:
            return (f"step {decision.step} has no failed child "
                    f"{decision.child or ''} to rework".replace("  ", " "),
                    "rework only the step's current child after it failed")
        return None
    if not plan.ready(decision.step):
        waiting = [n for n in sv.step.needs if not plan.steps[n].done]
        return (f"step {decision.step} is not ready (waits for "
                f"{', '.join(waiting) or 'a failed step'})", "open it once its needs are done")
    if kind == "open" and sv.attempts:
        return f"step {decision.step} was opened already", "fall back or rework instead"
    if kind == "fallback":
        if not sv.attempts:
            return f"step {decision.step} was never opened", "open it first"
        if not sv.step.retry.fallback:
            return f"step {decision.step} allows no fallback", "rework or give it up"
        if sv.live is not None and sv.live.state == "open":
            return (f"step {decision.step}'s child {sv.live.child} is still working",
                    "wait for its outcome or its timeout")
        if decision.agent in sv.agents:
            return (f"{decision.agent} already had step {decision.step}",
                    "fall back to the next-ranked candidate")
    return _hire(doc, decision, plan, routing, actors, manifests)


def _hire(doc: MissionDoc, decision: Decision, plan: View, routing: Routing | None,
          actors: Mapping[str, Actor], manifests: Mapping[str, Manifest]
          ) -> tuple[str, str] | None:
    sv = plan.steps[decision.step]
    if decision.agent is None or decision.price is None:
        return f"a {decision.kind} decision names an agent and a price", "set agent and price"
    offer = routing.steps.get(decision.step) if routing else None
    candidate = next((c for c in offer.candidates if c.agent == decision.agent), None) \
        if offer else None
    if offer is None or candidate is None:
        return (f"{decision.agent} is not a ranked candidate for step {decision.step}",
                "pick an agent from orchestration/routing.yaml")
    actor = actors.get(decision.agent)
    manifest = manifests.get(decision.agent)
    cid = sv.step.contract.split("@")[0]
    if actor is None or "specialist" not in actor.roles or manifest is None or not any(
            c.split("@")[0] == cid for c in manifest.contracts):
        return (f"{decision.agent} is not an active specialist serving {sv.step.contract}",
                "pick another candidate")
    if decision.price < candidate.price:
        return (f"price {decision.price} is below {decision.agent}'s ask {candidate.price}",
                "offer at least the ask or pick another agent")
    if decision.price > sv.step.max_price:
        return (f"price {decision.price} is above step {decision.step}'s max_price "
                f"{sv.step.max_price}", "offer less or pick a cheaper agent")
    total = decision.price + child_fee(decision.price, offer.fee_bp)
    # a failed child the fallback replaces is refunded first: its cost drops to the kept fee
    refund = 0
    if sv.live is not None and sv.live.state == "failed":
        refund = sv.live.cost - (0 if doc.tier == "T2" else sv.live.fee)
    step_left = plan.share(decision.step) - sv.cost + refund
    if total > step_left:
        return (f"costs {total} (price + fee) but step {decision.step} has "
                f"{max(step_left, 0)} of its budget share left", "offer less or give it up")
    if total > plan.left + refund:
        return (f"over budget: costs {total} (price + fee), {plan.left + refund} left of the "
                "mission's price", "offer less or give the step up")
    ranked = {c.agent: (c.score, c.price) for c in offer.candidates}
    cited = {f.agent: (f.score, f.price) for f in decision.routing}
    if decision.agent not in cited or any(ranked.get(a) != v for a, v in cited.items()):
        return (f"routing: cites figures that are not step {decision.step}'s in "
                "orchestration/routing.yaml (the chosen agent's among them)",
                "copy the agent, score and price of each candidate you weighed")
    return None
