"""Escrow outcomes: acceptance, settlement, refunds, arbitration, timers and the reconciler.

Order for every closure (docs/protocol.md, "Escrow"): the ledger transaction first, keyed by the
git object that caused it; then the platform-signed tag. The reconciler finishes whatever a crash
interrupted.
"""

from __future__ import annotations

import os

from aismm.core.document import Request
from aismm.core.errors import (
    AismmError,
    CheckFailed,
    ConflictError,
    LedgerError,
    MissionError,
    RepositoryError,
)
from aismm.core.model import dump_yaml
from aismm.core.refs import REFUNDED, SETTLED
from aismm.core.signing import PrivateKey
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import events, executions, judged, lifecycle
from aismm.services.attempts import write_to_attempt
from aismm.services.mission import ACCEPTED, ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import REQUEST_NAME, verdict_time

__all__ = ["accept", "cancel", "close_children", "reconcile", "refund", "request", "settle",
           "tick"]



def _crash_point(name: str) -> None:
    """Test hook: ``AISMM_CRASH_AT=<name>`` kills the process here (crash-matrix tests)."""
    if os.environ.get("AISMM_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def _attempt_head(repo: Repo, agent: str) -> str:
    tip = repo.ref(f"{ATTEMPT}{agent}")
    if tip is None:
        raise MissionError(f"--attempt {agent}: no such attempt; see `aismm mission status`")
    return tip


def accept(hub: Hub, mission_id: str, agent: str, as_actor: str | None = None,
           key: PrivateKey | None = None) -> list[str]:
    """The client's signed merge of an attempt into ``accepted`` (as `git merge --no-ff -S`)."""
    repo, policy = open_mission(hub, mission_id)
    signer = as_actor or policy.doc.client
    head = _attempt_head(repo, agent)
    old = repo.ref(ACCEPTED)
    if old is None:
        raise RepositoryError(f"{mission_id}: the mission has no accepted branch; repair the "
                              "repository")
    message = f"Merge branch 'attempts/{agent}' into accepted\n\nAccepted by {signer}.\n"
    with repo.quarantine():  # a refused merge leaves no object behind
        new = repo.write_commit(tree=repo.tree_of(head), parents=[old, head], message=message,
                                key=key or hub.hosted_key(signer),
                                who=registry.identity(signer), when=hub.clock.now())
        judged.judge(hub, repo, [(old, new, ACCEPTED)])
    repo.update_ref(ACCEPTED, new, old)
    _crash_point("after-merge")
    events.record(hub, repo.path, [(old, new, ACCEPTED)], signer)
    return [f"aismm: {signer} accepted attempts/{agent} with merge {new[:12]}"]


def request(hub: Hub, mission_id: str, agent: str, kind: str, reason: str,
            key: PrivateKey | None = None) -> list[str]:
    """The client asks for rework or escalates: a signed request file on the attempt."""
    repo, policy = open_mission(hub, mission_id)
    head = _attempt_head(repo, agent)
    tree = repo.subtree_id(head, "deliverable")
    if tree is None:
        raise MissionError(f"--attempt {agent}: nothing delivered yet; wait for a delivery")
    if repo.ref(ACCEPTED) != policy.main or repo.ref(REFUNDED):
        verb = "escalate" if kind == "escalation" else kind
        raise MissionError(f"{mission_id}: already closed; nothing to {verb}")
    existing = [p for p in repo.flatten(head) if REQUEST_NAME.match(p)]
    reworks = sum(1 for p in existing if p.endswith("-rework.yaml"))
    if kind == "rework" and reworks >= policy.contract.sla.max_rework:
        raise MissionError(f"--attempt {agent}: max_rework {policy.contract.sla.max_rework} "
                           "reached; accept or escalate instead")
    need = policy.contract.disputes.escalate_after_reworks
    if kind == "escalation" and reworks < need:
        raise MissionError(f"--attempt {agent}: the contract allows escalation after {need} "
                           f"rework request(s), {reworks} so far; ask for a rework first "
                           "(`aismm mission rework`)")
    path = f"requests/{len(existing) + 1:03d}-{kind}.yaml"
    doc = Request(mission=mission_id, kind=kind, deliverable_tree=tree, reason=reason)
    client = policy.doc.client
    new = write_to_attempt(
        hub, repo, agent, {path: dump_yaml(doc.model_dump(mode="json")).encode()},
        f"Request {kind}: {reason[:60]}\n", client, key, expect_tree=tree)
    return [f"aismm: {client} filed {path} on attempts/{agent} ({new[:12]})"]


def _fee_on_refund(tier: str, reason: str, fee: int) -> int:
    if reason == "cancel" or tier == "T2":
        return 0
    return fee


def _tag(hub: Hub, repo: Repo, ref: str, target: str, body: dict[str, object]) -> str:
    name = ref.rsplit("/", 1)[1]
    platform = hub.config.platform
    with repo.quarantine():  # a refused tag leaves no object behind
        tag = repo.write_tag(target=target, name=name, message=f"{name}\n\n{dump_yaml(body)}",
                             key=hub.hosted_key(platform), who=registry.identity(platform),
                             when=hub.clock.now())
        judged.judge(hub, repo, [(None, tag, ref)])
    try:
        repo.update_ref(ref, tag, None)
    except ConflictError:
        return tag  # a concurrent settler tagged first; the ledger kept it exactly once
    events.record(hub, repo.path, [("0" * 40, tag, ref)], platform)
    return tag


def settle(hub: Hub, mission_id: str) -> list[str]:
    """Pay out an accepted mission exactly once, then tag it ``settled``."""
    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    merge = judged.ensure(hub, f"missions/{mission_id}.git")[0].get(ACCEPTED)  # pays only this
    if merge is None or merge == policy.main:
        raise MissionError(f"{mission_id}: not accepted yet; accept an attempt first")
    head = repo.commit(merge).parents[1]
    agent = next(ref[len(ATTEMPT):] for ref, tip in repo.refs(ATTEMPT).items()
                 if repo.is_ancestor(head, tip))
    owner = registry.actor(hub, agent).owner
    lines = close_children(hub, mission_id) if policy.contract.steps else []  # workflows only
    with Ledger(hub.db_path, hub.clock) as ledger:
        done = ledger.closure(mission_id)
        if done is not None and done.kind == "settled" and repo.ref(SETTLED) is not None:
            return lines  # a replayed event: settled and tagged already
        price = doc.price
        if policy.contract.steps:  # a workflow: the orchestrator earns what its children left
            price = done.provider if done is not None else \
                ledger.balance(f"escrow:{mission_id}") - doc.fee
        if doc.parent is not None:
            closure = ledger.settle_child(mission_id, doc.client, doc.parent, owner, price,
                                          doc.fee, cause=merge)
        else:
            closure = ledger.settle(mission_id, doc.client, owner, price, doc.fee, cause=merge)
    _crash_point("after-ledger")
    if repo.ref(SETTLED) is None:
        body = {"schema_version": 1, "mission": mission_id, "tier": doc.tier,
                "fee_bp": doc.fee_bp, "acceptance": merge, "agent": agent, **closure.to_dict()}
        _tag(hub, repo, SETTLED, merge, body)
    executions.record_outcomes(hub, mission_id, accepted_agent=agent)
    return [*lines, f"aismm: escrow settled: {closure.provider} to provider:{owner}, "
            f"{doc.fee} fee to platform:fees ({doc.fee_bp / 100:g}% {doc.tier}); tag settled on "
            f"{merge[:12]}"]


def refund(hub: Hub, mission_id: str, reason: str) -> list[str]:
    """Return the escrow (minus the kept fee at T0/T1) and tag the mission ``refunded``."""
    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    kept = _fee_on_refund(doc.tier, reason, doc.fee)
    lines = close_children(hub, mission_id) if policy.contract.steps else []
    with Ledger(hub.db_path, hub.clock) as ledger:
        done = ledger.closure(mission_id)
        # a merge that landed after the refund's ledger transaction must not block its tag
        if repo.ref(ACCEPTED) != policy.main and (done is None or done.kind != "refunded"):
            raise MissionError(f"{mission_id}: already accepted; it settles instead")
        if policy.contract.steps and done is None:  # children may have spent into the fee
            kept = min(kept, ledger.balance(f"escrow:{mission_id}"))
        elif done is not None:
            kept = done.fee
        if doc.parent is not None:
            closure = ledger.refund_child(mission_id, doc.client, doc.parent, kept,
                                          cause=f"{reason}:{policy.main}")
        else:
            closure = ledger.refund(mission_id, doc.client, kept,
                                    cause=f"{reason}:{policy.main}")
    _crash_point("after-ledger")
    if repo.ref(REFUNDED) is None:
        body = {"schema_version": 1, "mission": mission_id, "tier": doc.tier, "reason": reason,
                **closure.to_dict()}
        _tag(hub, repo, REFUNDED, policy.main, body)
    executions.record_outcomes(hub, mission_id, accepted_agent=None)
    if policy.contract.steps and doc.tier == "T2" and reason != "cancel":
        lines += _guarantee(hub, mission_id, doc.client,
                            doc.price + doc.fee - closure.client_refund, f"{reason}:{policy.main}")
    payee = f"escrow:{doc.parent}" if doc.parent else doc.client
    return [*lines, f"aismm: escrow refunded ({reason}): {closure.client_refund} back to {payee}"
            + (f", {kept} fee kept by the platform" if kept else "")]


def _guarantee(hub: Hub, mission_id: str, client: str, amount: int, cause: str) -> list[str]:
    """T2: the platform makes the client of a failed workflow whole for what its children were
    paid (from ``platform:fees``); a shortfall there leaves it pending for `aismm reconcile`."""
    if amount <= 0:
        return []
    try:
        with Ledger(hub.db_path, hub.clock) as ledger:
            ledger.guarantee(mission_id, client, amount, cause)
    except LedgerError as exc:
        return [f"aismm: {mission_id}: T2 guarantee of {amount} to {client} pending "
                f"({str(exc).splitlines()[0]})"]
    return [f"aismm: {mission_id}: T2 guarantee: {amount} from platform:fees to {client}"]


def close_children(hub: Hub, mission_id: str) -> list[str]:
    """Cancel a workflow's children that are still open (their escrow back to the parent's)."""
    with Ledger(hub.db_path, hub.clock) as ledger:
        open_children = [c for c in ledger.children(mission_id) if ledger.closure(c) is None]
    lines: list[str] = []
    for child in open_children:
        repo, policy = open_mission(hub, child)
        if repo.ref(ACCEPTED) != policy.main:
            lines += settle(hub, child)  # accepted already: it is paid, not cancelled
        else:
            lines += refund(hub, child, "cancel")
    return lines


def cancel(hub: Hub, mission_id: str) -> list[str]:
    """Cancel before any delivery: everything back to the client."""
    repo, _policy = open_mission(hub, mission_id)
    for ref, tip in repo.refs(ATTEMPT).items():
        if repo.subtree_id(tip, "deliverable") is not None:
            raise MissionError(f"{mission_id}: {ref} has delivered; cancel only before any "
                               "delivery (escalate instead)")
    return refund(hub, mission_id, "cancel")


def tick(hub: Hub) -> list[str]:
    """Apply every due timer: auto-acceptance after the window, refunds after the deadline."""
    lines: list[str] = []
    failures: list[AismmError] = []
    for mission_id in hub.mission_ids():
        try:
            lines += _tick_one(hub, mission_id, lifecycle.status(hub, mission_id))
        except AismmError as exc:  # one mission's trouble must not stop the others' timers
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise CheckFailed("tick", [str(f).splitlines()[0] for f in failures])
    return lines


def _tick_one(hub: Hub, mission_id: str, st: lifecycle.MissionStatus) -> list[str]:
    if st["state"] in ("settled", "refunded"):
        return []
    if st["state"] == "accepted":
        return settle(hub, mission_id)
    repo, policy = open_mission(hub, mission_id)
    window = policy.contract.sla.acceptance_window
    now = hub.clock.now()
    ready = [a for a in st["attempts"] if a["state"] == "awaiting_acceptance"
             and now.timestamp() - (verdict_time(repo, a["head"], "verdicts/platform.yaml")
                                    or now.timestamp()) >= window.total_seconds()]
    if ready:
        return accept(hub, mission_id, ready[0]["agent"], as_actor=hub.config.platform)
    if st["state"] == "expired":  # not when the DoD passed in time: the window runs on
        return refund(hub, mission_id, "deadline")
    return []


def reconcile(hub: Hub) -> list[str]:
    """Finish half-done settlements/refunds and cross-check tags against the ledger."""
    lines: list[str] = []
    problems: list[str] = []
    with Ledger(hub.db_path, hub.clock) as ledger:
        closures = {m: ledger.closure(m) for m in hub.mission_ids()}
    for mission_id, closure in closures.items():
        repo, policy = open_mission(hub, mission_id)
        accepted = repo.ref(ACCEPTED)
        settled, refunded = repo.ref(SETTLED), repo.ref(REFUNDED)
        unsettled = accepted and accepted != policy.main and closure is None
        if unsettled or (closure is not None and closure.kind == "settled" and settled is None):
            lines += settle(hub, mission_id)
        elif closure is not None and closure.kind == "refunded" and refunded is None:
            reason = closure.cause.split(":", 1)[0]
            lines += refund(hub, mission_id, reason)
        elif closure is not None and closure.kind == "refunded" and policy.contract.steps and \
                policy.doc.tier == "T2" and not closure.cause.startswith("cancel:"):
            with Ledger(hub.db_path, hub.clock) as ledger:
                paid = any(t.action == "guarantee" and t.mission == mission_id
                           for t in ledger.history(f"client:{policy.doc.client}"))
            if not paid:  # a guarantee left pending when platform:fees could not cover it
                lines += _guarantee(hub, mission_id, policy.doc.client, policy.doc.price +
                                    policy.doc.fee - closure.client_refund, closure.cause)
        tips = {kind: repo.ref(ref) for ref, kind in ((SETTLED, "settled"),
                                                      (REFUNDED, "refunded"))}
        if any(tips.values()):  # re-read after the tags: closers post the ledger, then tag
            with Ledger(hub.db_path, hub.clock) as ledger:
                closure = ledger.closure(mission_id)
        for kind, tip in tips.items():
            if tip is not None and (closure is None or closure.kind != kind):
                problems.append(f"{mission_id}: tag {kind} exists but the ledger has "
                                f"{closure.kind if closure else 'no closure'}")
    if problems:
        raise CheckFailed("reconcile", problems)
    return lines or ["aismm: reconcile: nothing to finish; tags and ledger agree"]


