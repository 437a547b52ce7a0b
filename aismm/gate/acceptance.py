"""The gate's rules for ``accepted`` and the settlement tags (docs/protocol.md)."""

from __future__ import annotations

from aismm.core.refs import REFUNDED, SETTLED
from aismm.gate.base import Judge
from aismm.state.policy import (
    ACCEPTED,
    ATTEMPT,
    REQUEST_NAME,
    MissionPolicy,
    quorum,
    read_verdict,
    verdict_time,
)

__all__ = ["judge_acceptance", "judge_tag"]


def judge_acceptance(j: Judge, policy: MissionPolicy, old: str | None, new: str | None,
                      ref: str, after: dict[str, str]) -> None:
    if not j.fast_forward(old, new, ref) or new is None:
        return
    if old != policy.main:
        j.reject(ref, "ref", "this mission is already accepted", "nothing to do")
        return
    if j.repo.ref(REFUNDED) or j.ctx.closure(policy.doc.id) == "refunded":
        j.reject(ref, "ref", "this mission was refunded", "it can no longer be accepted")
        return
    info = j.repo.commit(new)
    heads = {tip: r for r, tip in after.items() if r.startswith(ATTEMPT)}
    if len(info.parents) == 2 and info.parents[0] == old and info.parents[1] not in heads:
        stale = [r for tip, r in heads.items() if j.repo.exists(info.parents[1])
                 and j.repo.is_ancestor(info.parents[1], tip)]
        if stale:
            j.reject(ref, f"commit {new[:12]}", f"merges an old head of {stale[0]} (verdicts "
                     "or requests were added since)", "git fetch, then merge "
                     f"origin/{stale[0].removeprefix('refs/heads/')} again")
            return
    if len(info.parents) != 2 or info.parents[0] != old or info.parents[1] not in heads:
        j.reject(ref, f"commit {new[:12]}", "acceptance must be a merge with parents "
                 "[accepted, attempt head]", "run `git merge --no-ff -S origin/attempts/<agent>` "
                 "on accepted")
        return
    if j.repo.new_commits(new, [info.parents[1], old]) != [new]:
        j.reject(ref, f"commit {new[:12]}", "acceptance must add exactly one merge commit",
                 "merge the attempt head directly")
        return
    head = info.parents[1]
    attempt_ref = heads[head]
    if info.tree != j.repo.tree_of(head):
        j.reject(ref, f"commit {new[:12]}", "merge tree differs from the attempt head's tree",
                 "merge without changing anything (no conflict edits)")
        return
    signer = j.commit_signer(ref, new, j.registry.by_key)
    if signer is None:
        return
    tree = j.repo.subtree_id(head, "deliverable")
    if tree is None:
        j.reject(ref, attempt_ref, "nothing has been delivered", "wait for a delivery")
        return
    requests = [m for m in (REQUEST_NAME.match(p) for p in j.repo.flatten(head)) if m]
    reworks = sum(1 for m in requests if m.group(2) == "rework")
    if reworks > policy.contract.sla.max_rework:
        j.reject(ref, attempt_ref, f"{reworks} rework requests exceed max_rework",
                 "escalate instead")
    ruling = read_verdict(j.repo, head, "verdicts/arbiter.yaml")
    escalated = any(m.group(2) == "escalation" for m in requests)
    if escalated and ruling is None:
        j.reject(ref, attempt_ref, "an escalation is open", "wait for the arbiter's ruling")
        return
    if ruling is not None and ruling.verdict == "refund":
        j.reject(ref, attempt_ref, "the arbiter ruled refund", "the mission cannot be accepted")
        return
    platform_verdict = read_verdict(j.repo, head, "verdicts/platform.yaml")
    dod_ok = platform_verdict is not None and platform_verdict.verdict == "pass" and \
        platform_verdict.deliverable_tree == tree
    if signer.id == policy.doc.client:
        pass
    elif signer.id == j.ctx.platform:
        released = ruling is not None and ruling.verdict == "release"
        if not released and not _window_elapsed(j, policy, head, dod_ok):
            j.reject(ref, f"commit {new[:12]}", "the platform may accept only after an "
                     "arbiter's release or an elapsed acceptance window",
                     "let the client accept")
            return
    else:
        j.reject(ref, f"commit {new[:12]}", f"signed by {signer.id}, not the client "
                 f"{policy.doc.client}", "only the client accepts (git merge --no-ff -S)")
        return
    if policy.doc.tier in ("T1", "T2") and not (ruling and ruling.verdict == "release"):
        if not dod_ok:
            j.reject(ref, attempt_ref, f"the platform DoD verdict does not pass on the current "
                     f"deliverable ({policy.doc.tier})", "wait for verdicts or request rework")
        need = policy.contract.dod.review.quorum
        have = quorum(j.repo, policy, head, j.registry)
        if len(have) < need:
            j.reject(ref, attempt_ref, f"review quorum not met ({len(have)} of {need} "
                     "independent passing verdicts on the current deliverable)",
                     "wait for reviewers or request rework")


def _window_elapsed(j: Judge, policy: MissionPolicy, head: str, dod_ok: bool) -> bool:
    if not dod_ok:
        return False
    window = policy.contract.sla.acceptance_window
    since = verdict_time(j.repo, head, "verdicts/platform.yaml")
    return since is not None and \
        j.ctx.now.timestamp() - since >= window.total_seconds()


def judge_tag(j: Judge, policy: MissionPolicy, old: str | None, new: str | None, ref: str,
               after: dict[str, str]) -> None:
    if old is not None or new is None:
        j.reject(ref, "ref", "settlement tags are create-once", "never move or delete them")
        return
    if j.repo.object_type(new) != "tag":
        j.reject(ref, "ref", "must be an annotated, signed tag", "only the platform tags")
        return
    tag = j.repo.tag(new)
    signer = j.signer(ref, new, tag.signature, tag.payload, j.registry.by_key)
    if signer is None:
        return
    if signer.id != j.ctx.platform:
        j.reject(ref, "tag", f"signed by {signer.id}; only the platform tags",
                 "tags are written by the hub when it settles or refunds")
        return
    if tag.name != ref.rsplit("/", 1)[1]:
        j.reject(ref, "tag", f"the tag object is named {tag.name!r}",
                 "name the tag object after its ref")
        return
    other = REFUNDED if ref == SETTLED else SETTLED
    if other in after:
        j.reject(ref, "tag", f"{other.rsplit('/', 1)[1]} already exists",
                 "a mission is settled or refunded, never both")
    expected = after.get(ACCEPTED) if ref.endswith("settled") else policy.main
    if ref.endswith("settled") and expected == policy.main:
        j.reject(ref, "tag", "nothing has been accepted", "settle only after acceptance")
    elif tag.target != expected:
        j.reject(ref, "tag", f"points at {tag.target[:12]}, not {str(expected)[:12]}",
                 "tag the acceptance merge (settled) or main (refunded)")
