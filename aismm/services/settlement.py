"""Escrow outcomes: acceptance, settlement, refunds, arbitration, timers and the reconciler.

Order for every closure (DESIGN §8): the ledger transaction first, keyed by the git object that
caused it; then the platform-signed tag. The reconciler finishes whatever a crash interrupted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import TYPE_CHECKING, Any

from aismm import gate
from aismm.core.clock import iso, parse_duration
from aismm.core.document import Request, Verdict
from aismm.core.errors import AismmError, ConflictError, MissionError
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.safepath import printable
from aismm.core.signing import PrivateKey
from aismm.infra.git import Repo
from aismm.infra.ledger import Ledger
from aismm.services import judged
from aismm.services.mission import ACCEPTED, ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import REQUEST_NAME, MissionPolicy, read_verdict, verdict_time

if TYPE_CHECKING:
    from aismm.infra.hub import Hub

__all__ = ["accept", "request", "settle", "refund", "cancel", "arbitrate", "tick", "reconcile",
           "record_execution"]

SETTLED, REFUNDED = "refs/tags/settled", "refs/tags/refunded"


def _crash_point(name: str) -> None:
    """Test hook: ``AISMM_CRASH_AT=<name>`` kills the process here (crash-matrix tests)."""
    if os.environ.get("AISMM_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def _attempt_head(repo: Repo, agent: str) -> str:
    tip = repo.ref(f"{ATTEMPT}{agent}")
    if tip is None:
        raise MissionError(f"--attempt {agent}: no such attempt; see `aismm mission status`")
    return tip


def accept(hub: "Hub", mission_id: str, agent: str, as_actor: str | None = None,
           key: PrivateKey | None = None) -> list[str]:
    """The client's signed merge of an attempt into ``accepted`` (as `git merge --no-ff -S`)."""
    repo, policy = open_mission(hub, mission_id)
    signer = as_actor or policy.doc.client
    head = _attempt_head(repo, agent)
    old = repo.ref(ACCEPTED)
    assert old is not None
    message = f"Merge branch 'attempts/{agent}' into accepted\n\nAccepted by {signer}.\n"
    with repo.quarantine():  # a refused merge leaves no object behind
        new = repo.write_commit(tree=repo.tree_of(head), parents=[old, head], message=message,
                                key=key or hub.hosted_key(signer),
                                who=registry.identity(signer), when=hub.clock.now())
        gate.judge(hub, repo, [(old, new, ACCEPTED)])
    repo.update_ref(ACCEPTED, new, old)
    _crash_point("after-merge")
    from aismm.services import events

    events.record(hub, repo.path, [(old, new, ACCEPTED)], signer)
    lines = [f"aismm: {signer} accepted attempts/{agent} with merge {new[:12]}"]
    if hub.config.processing != "inline":
        return lines
    lines += events.process(hub)
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(mission_id)
    if closure is not None and closure.kind == "refunded":  # a refund won the race
        raise ConflictError(f"escrow:{mission_id}: already refunded by {closure.cause}; "
                            f"merge {new[:12]} landed but pays nothing")
    return lines


def request(hub: "Hub", mission_id: str, agent: str, kind: str, reason: str,
            key: PrivateKey | None = None) -> list[str]:
    """The client asks for rework or escalates: a signed request file on the attempt."""
    from aismm.services import assessment, events

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
    doc = Request(mission=mission_id, kind=kind, deliverable_tree=tree,  # type: ignore[arg-type]
                  reason=reason)
    client = policy.doc.client
    new = assessment.write_to_attempt(
        hub, repo, agent, {path: dump_yaml(doc.model_dump(mode="json")).encode()},
        f"Request {kind}: {reason[:60]}\n", client, key, expect_tree=tree)
    lines = [f"aismm: {client} filed {path} on attempts/{agent} ({new[:12]})"]
    return lines + (events.process(hub) if hub.config.processing == "inline" else [])


def arbitrate(hub: "Hub", mission_id: str, agent: str) -> list[str]:
    """The hosted arbiter rules on an escalation, on the current tree's complete evidence.

    It weighs the DoD of the current tree (run first if it is missing or stale), a fresh review
    by an independent reviewer who has not reviewed this attempt, and records the client's
    stated reason in the ruling. Release needs the DoD to pass and the fresh review (when one
    could be had) to pass at the contract's threshold; anything else refunds.
    """
    from aismm.services import assessment

    repo, policy = open_mission(hub, mission_id)
    arbiter = policy.doc.arbiter
    if not hub.key_path(arbiter).is_file():
        return [f"aismm: arbiter {arbiter} is external; it pushes verdicts/arbiter.yaml"]
    head = _attempt_head(repo, agent)
    tree = repo.subtree_id(head, "deliverable")
    if tree is None:
        raise MissionError(f"--attempt {agent}: nothing delivered; nothing to rule on")
    lines: list[str] = []
    platform = read_verdict(repo, head, "verdicts/platform.yaml")
    if platform is None or platform.deliverable_tree != tree:  # evidence first, then the ruling
        lines += assessment.assess(hub, mission_id, agent)
        head = _attempt_head(repo, agent)
        platform = read_verdict(repo, head, "verdicts/platform.yaml")
        if repo.subtree_id(head, "deliverable") != tree:
            return lines + [f"aismm: {agent}: the deliverable changed; ruling on the new one later"]
    dod_pass = platform is not None and platform.verdict == "pass" and \
        platform.deliverable_tree == tree
    reason = _escalation_reason(repo, head)
    fresh_id = assessment.fresh_reviewer(hub, policy, agent, head)
    fresh = None
    if fresh_id is not None:
        fresh, line = assessment.review(hub, repo, policy, agent, fresh_id, head, tree)
        lines.append(line)
        head = _attempt_head(repo, agent)
    threshold = policy.contract.dod.review.threshold
    review_pass = fresh is None or (fresh.verdict == "pass" and fresh.score >= threshold)
    release = dod_pass and review_pass
    parts = [f"client's reason: {reason}",
             f"DoD on the current tree: {'pass' if dod_pass else 'fail'}"
             f" ({platform.score if platform else 0}/100)",
             f"fresh review by {fresh.reviewer}: {fresh.verdict} ({fresh.score}/100, threshold "
             f"{threshold})" if fresh else "no independent reviewer who had not reviewed this "
             "attempt was available; ruled on the DoD alone",
             "the delivery meets the contract" if release else "the delivery does not meet the "
             "contract"]
    ruling = Verdict(mission=mission_id, reviewer=arbiter, deliverable_tree=tree,
                     verdict="release" if release else "refund",
                     score=min(platform.score if platform else 0, fresh.score if fresh else 100),
                     comments="; ".join(parts))
    assessment.write_to_attempt(hub, repo, agent, {"verdicts/arbiter.yaml": dump_yaml(
        ruling.model_dump(mode="json")).encode()}, f"Ruling: {ruling.verdict}\n", arbiter)
    lines.append(f"aismm: arbiter {arbiter} ruled {ruling.verdict.upper()} on attempts/{agent}")
    if release:
        lines += accept(hub, mission_id, agent, as_actor=hub.config.platform)
    else:
        lines += refund(hub, mission_id, reason="arbiter")
    return lines


def _escalation_reason(repo: Repo, head: str) -> str:
    """The stated reason of the attempt's latest escalation request."""
    paths = sorted(p for p in repo.flatten(head) if p.endswith("-escalation.yaml")
                   and REQUEST_NAME.match(p))
    if not paths:
        return "(no escalation request)"
    try:
        doc = Request.model_validate(load_yaml(repo.read(head, paths[-1]) or b"", paths[-1]))
    except ValueError:
        return "(unreadable)"
    return printable(doc.reason, limit=500)


def _fee_on_refund(tier: str, reason: str, fee: int) -> int:
    if reason == "cancel" or tier == "T2":
        return 0
    return fee


def _tag(hub: "Hub", repo: Repo, ref: str, target: str, body: dict[str, Any]) -> str:
    name = ref.rsplit("/", 1)[1]
    platform = hub.config.platform
    with repo.quarantine():  # a refused tag leaves no object behind
        tag = repo.write_tag(target=target, name=name, message=f"{name}\n\n{dump_yaml(body)}",
                             key=hub.hosted_key(platform), who=registry.identity(platform),
                             when=hub.clock.now())
        gate.judge(hub, repo, [(None, tag, ref)])
    try:
        repo.update_ref(ref, tag, None)
    except ConflictError:
        return tag  # a concurrent settler tagged first; the ledger kept it exactly once
    from aismm.services import events

    events.record(hub, repo.path, [("0" * 40, tag, ref)], platform)
    return tag


def settle(hub: "Hub", mission_id: str) -> list[str]:
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
    with Ledger(hub.db_path, hub.clock) as ledger:
        done = ledger.closure(mission_id)
        if done is not None and done.kind == "settled" and repo.ref(SETTLED) is not None:
            return []  # a replayed event: settled and tagged already
        closure = ledger.settle(mission_id, doc.client, owner, doc.price, doc.fee, cause=merge)
    _crash_point("after-ledger")
    if repo.ref(SETTLED) is None:
        body = {"schema_version": 1, "mission": mission_id, "tier": doc.tier,
                "fee_bp": doc.fee_bp, "acceptance": merge, "agent": agent, **closure.to_dict()}
        _tag(hub, repo, SETTLED, merge, body)
    _record_outcomes(hub, mission_id, accepted_agent=agent)
    return [f"aismm: escrow settled: {doc.price} to provider:{owner}, {doc.fee} fee to "
            f"platform:fees ({doc.fee_bp / 100:g}% {doc.tier}); tag settled on {merge[:12]}"]


def refund(hub: "Hub", mission_id: str, reason: str) -> list[str]:
    """Return the escrow (minus the kept fee at T0/T1) and tag the mission ``refunded``."""
    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    kept = _fee_on_refund(doc.tier, reason, doc.fee)
    with Ledger(hub.db_path, hub.clock) as ledger:
        done = ledger.closure(mission_id)
        # a merge that landed after the refund's ledger transaction must not block its tag
        if repo.ref(ACCEPTED) != policy.main and (done is None or done.kind != "refunded"):
            raise MissionError(f"{mission_id}: already accepted; it settles instead")
        closure = ledger.refund(mission_id, doc.client, kept, cause=f"{reason}:{policy.main}")
    _crash_point("after-ledger")
    if repo.ref(REFUNDED) is None:
        body = {"schema_version": 1, "mission": mission_id, "tier": doc.tier, "reason": reason,
                **closure.to_dict()}
        _tag(hub, repo, REFUNDED, policy.main, body)
    _record_outcomes(hub, mission_id, accepted_agent=None)
    return [f"aismm: escrow refunded ({reason}): {closure.client_refund} back to {doc.client}"
            + (f", {kept} fee kept by the platform" if kept else "")]


def cancel(hub: "Hub", mission_id: str) -> list[str]:
    """Cancel before any delivery: everything back to the client."""
    repo, _policy = open_mission(hub, mission_id)
    for ref, tip in repo.refs(ATTEMPT).items():
        if repo.subtree_id(tip, "deliverable") is not None:
            raise MissionError(f"{mission_id}: {ref} has delivered; cancel only before any "
                               "delivery (escalate instead)")
    return refund(hub, mission_id, "cancel")


def tick(hub: "Hub") -> list[str]:
    """Apply every due timer: auto-acceptance after the window, refunds after the deadline."""
    from aismm.services import lifecycle

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
        from aismm.core.errors import CheckFailed

        raise CheckFailed("tick", [str(f).splitlines()[0] for f in failures])
    return lines


def _tick_one(hub: "Hub", mission_id: str, st: dict[str, Any]) -> list[str]:
    if st["state"] in ("settled", "refunded"):
        return []
    if st["state"] == "accepted":
        return settle(hub, mission_id)
    repo, policy = open_mission(hub, mission_id)
    window = parse_duration(policy.contract.sla.acceptance_window)
    now = hub.clock.now()
    ready = [a for a in st["attempts"] if a["state"] == "awaiting_acceptance"
             and now.timestamp() - (verdict_time(repo, a["head"], "verdicts/platform.yaml")
                                    or now.timestamp()) >= window.total_seconds()]
    if ready:
        return accept(hub, mission_id, ready[0]["agent"], as_actor=hub.config.platform)
    if st["state"] == "expired":  # not when the DoD passed in time: the window runs on
        return refund(hub, mission_id, "deadline")
    return []


def reconcile(hub: "Hub") -> list[str]:
    """Finish half-done settlements/refunds and cross-check tags against the ledger."""
    lines, problems = [], []
    with Ledger(hub.db_path, hub.clock) as ledger:
        closures = {m: ledger.closure(m) for m in hub.mission_ids()}
    for mission_id, closure in closures.items():
        repo, policy = open_mission(hub, mission_id)
        accepted = repo.ref(ACCEPTED)
        settled, refunded = repo.ref(SETTLED), repo.ref(REFUNDED)
        if accepted and accepted != policy.main and closure is None:
            lines += settle(hub, mission_id)
        elif closure is not None and closure.kind == "settled" and settled is None:
            lines += settle(hub, mission_id)
        elif closure is not None and closure.kind == "refunded" and refunded is None:
            reason = closure.cause.split(":", 1)[0]
            lines += refund(hub, mission_id, reason)
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
        from aismm.core.errors import CheckFailed

        raise CheckFailed("reconcile", problems)
    return lines or ["aismm: reconcile: nothing to finish; tags and ledger agree"]


def record_execution(hub: "Hub", mission_id: str, agent: str, outcome: str,
                     detail: str = "") -> None:
    """Append one execution record (idempotent per mission, agent and outcome head)."""
    from aismm.infra.store import Store

    repo, policy = open_mission(hub, mission_id)
    doc = policy.doc
    snap = registry.snapshot(Repo(hub.registry_path))
    head = repo.ref(f"{ATTEMPT}{agent}") or policy.main
    quality = _quality(repo, policy, head) if outcome != "failed" else 0.0
    from aismm.services.lifecycle import delivered_at

    created = dt.datetime.fromisoformat(doc.created.replace("Z", "+00:00"))
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


def _quality(repo: Repo, policy: MissionPolicy, head: str) -> float:
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


def _record_outcomes(hub: "Hub", mission_id: str, accepted_agent: str | None) -> None:
    repo, policy = open_mission(hub, mission_id)
    for agent in policy.doc.assignment.agents:
        if agent == accepted_agent:
            outcome = "accepted"
        elif accepted_agent is not None:
            outcome = "not_selected"
        else:
            outcome = "refunded"
        record_execution(hub, mission_id, agent, outcome)
