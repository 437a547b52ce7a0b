"""Disputes: the hosted arbiter rules on an escalation, on the current tree's complete evidence."""

from __future__ import annotations

from aismm.core.document import Request, Verdict
from aismm.core.errors import MissionError
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.safepath import printable
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import delivery
from aismm.services.attempts import write_to_attempt
from aismm.services.mission import open_mission
from aismm.services.settlement import _attempt_head, accept, refund
from aismm.state.policy import REQUEST_NAME, read_verdict

__all__ = ['arbitrate']


def arbitrate(hub: Hub, mission_id: str, agent: str) -> list[str]:
    """The hosted arbiter rules on an escalation, on the current tree's complete evidence.

    It weighs the DoD of the current tree (run first if it is missing or stale), a fresh review
    by an independent reviewer who has not reviewed this attempt, and records the client's
    stated reason in the ruling. Release needs the DoD to pass and the fresh review (when one
    could be had) to pass at the contract's threshold; anything else refunds.
    """
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
        lines += delivery.check(hub, mission_id, agent)
        head = _attempt_head(repo, agent)
        platform = read_verdict(repo, head, "verdicts/platform.yaml")
        if repo.subtree_id(head, "deliverable") != tree:
            return [*lines, f"aismm: {agent}: the deliverable changed; ruling on the new one later"]
    dod_pass = platform is not None and platform.verdict == "pass" and \
        platform.deliverable_tree == tree
    reason = _escalation_reason(repo, head)
    fresh_id = delivery.fresh_reviewer(hub, policy, agent, head)
    fresh = None
    if fresh_id is not None:
        fresh, line = delivery.review(hub, repo, policy, agent, fresh_id, head, tree)
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
    write_to_attempt(hub, repo, agent, {"verdicts/arbiter.yaml": dump_yaml(
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
