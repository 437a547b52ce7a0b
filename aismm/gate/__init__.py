"""The gate: the one validator that decides whether a set of ref updates is allowed.

Everything is judged against the policy already in the repository (``main``'s mission.yaml and
frozen contract, the registry's actors), never against the incoming objects.
"""

from __future__ import annotations

import re

from aismm.core.actor import Actor, Manifest
from aismm.core.contract import parse_contract
from aismm.core.document import MissionDoc, Request, Verdict
from aismm.core.errors import AismmError, GateRejection, Problem
from aismm.core.files import document_problems, layout_problems, schema_targets
from aismm.core.model import describe_validation, load_yaml  # noqa: F401 (re-exported)
from aismm.gate import acceptance, plan
from aismm.gate.base import SHOWN_PROBLEMS, Context, Judge, Stop, shown
from aismm.infra.git import MODE_EXEC, MODE_FILE, ZERO, Entry, Repo
from aismm.state.policy import (  # noqa: F401 (re-exported)
    ACCEPTED,
    ATTEMPT,
    MAIN,
    REQUEST_NAME,
    TAGS,
    MissionPolicy,
    load_policy,
    quorum,
    read_verdict,
    verdict_time,
)
from aismm.state.policy import agent_of as _agent_of
from aismm.state.policy import dependence as _dependence
from aismm.state.registry import key_holder, load_actors, snapshot

__all__ = ["Context", "MissionPolicy", "Update", "judge", "load_policy", "quorum",
           "rejection_lines"]

Update = tuple["str | None", str, str]



def _norm(value: str | None) -> str | None:
    return None if value in (None, "", ZERO) else value


def judge(ctx: Context, repo: Repo, updates: list[Update], *, pusher: str | None = None,
          bootstrap: bool = False, creating: bool = False) -> None:
    """Allow a set of ref updates or raise :class:`GateRejection` listing every problem."""
    norm = [(_norm(old), _norm(new), ref) for old, new, ref in updates]
    is_registry = repo.path.resolve() == ctx.registry.path.resolve()
    reg_repo = repo if is_registry else ctx.registry
    # The registry a registry update is judged against is the one it builds on (its old value),
    # never the value being judged: a write that skipped the hooks cannot vouch for itself.
    base = next((old for old, _new, ref in norm if ref == MAIN and old), None) \
        if is_registry else None
    try:
        registry = snapshot(reg_repo, base)
    except AismmError:
        raise
    except Exception as exc:  # any failure reading a corrupt registry fails closed
        raise GateRejection([Problem("registry", "registry.git", f"unreadable ({exc})",
                                     "repair the hub registry")]) from exc
    j = Judge(ctx, repo, registry, pusher)
    try:
        if not _objects_exist(j, norm):
            raise Stop
        if is_registry:
            _judge_registry(j, norm, bootstrap)
        else:
            _judge_mission(j, norm, creating)
    except Stop:
        pass
    except GateRejection:
        raise
    except Exception as exc:  # anything unexpected rejects (fail closed)
        j.reject(norm[0][2] if norm else "?", "gate", f"internal error ({type(exc).__name__}: "
                 f"{exc})", "report this; the push was refused to stay safe")
    if j.problems:
        raise j.rejection()


def rejection_lines(exc: GateRejection, limit: int = SHOWN_PROBLEMS) -> list[str]:
    """The lines a pusher sees for a rejection: the first ``limit`` problems, then one line
    counting the rest (a push with a million problems prints ``limit + 1`` lines)."""
    problems = exc.problems
    more = max(0, len(problems) - limit) + int(getattr(exc, "unlisted", 0))
    lines = [str(p) for p in problems[:limit]]
    if more:
        ref = problems[limit].ref if len(problems) > limit else problems[-1].ref
        lines.append(f"aismm: {ref}: … and {more} more problem{'s' if more != 1 else ''}: not "
                     "shown; fix the ones above and push again to see the rest")
    return lines


def _objects_exist(j: Judge, updates: list[tuple[str | None, str | None, str]]) -> bool:
    """Both ends of every update name objects in the repository; branches hold commits."""
    for old, new, ref in updates:
        for label, oid in (("old", old), ("new", new)):
            if oid is not None and not (re.fullmatch(r"[0-9a-f]{40}", oid) and
                                        j.repo.exists(oid)):
                j.reject(ref, "ref", f"{label} value {oid[:40]!r} is not an object in this "
                         "repository", "push the objects along with the ref")
        if new is not None and ref.startswith("refs/heads/") and j.repo.exists(new) and \
                j.repo.object_type(new) != "commit":
            j.reject(ref, "ref", f"points at a {j.repo.object_type(new)}, not a commit",
                     "branches hold commits only")
    return not j.problems


# -- registry ---------------------------------------------------------------------------------
def _judge_registry(j: Judge, updates: list[tuple[str | None, str | None, str]],
                    bootstrap: bool) -> None:
    platform = j.ctx.platform
    for old, new, ref in updates:
        if ref != MAIN:
            j.reject(ref, "ref", "registry.git has only refs/heads/main",
                     "push to main")
            continue
        if not j.fast_forward(old, new, ref) or new is None:
            continue
        # only what the update's old value already holds is known: judged after the fact, the
        # ref itself already points at the new commits
        commits = j.repo.new_commits(new, [old] if old else [])
        current = j.repo.ref(MAIN)
        # counted as deep as bounded() counts, so the two share the memo's subtrees (a judged
        # registry is never that deep; if it were, it is counted in full)
        grown = j.repo.count_paths(current, 1 << 40, j.nesting, j.paths) if current else 0
        if current and grown < 0:
            grown = j.repo.count_paths(current, 1 << 40, 1 << 20)
        j.bounded(ref, commits, grown + j.ctx.limits.max_files)
        for oid in commits:
            info = j.repo.commit(oid)
            if not info.parents:
                if not (bootstrap and old is None and oid == commits[0]):
                    j.reject(ref, f"commit {oid[:12]}", "a second root commit",
                             "build on the registry's main")
                    continue
                keys = {a.key: a for a in load_actors(j.repo, oid).values()}
            else:
                keys = j.registry.by_key if old is not None else {}
            if len(info.parents) > 1:
                j.reject(ref, f"commit {oid[:12]}", "merge commits are not allowed",
                         "rebase instead of merging")
                continue
            signer = j.commit_signer(ref, oid, keys)
            if signer is None:
                continue
            parent_tree = j.repo.tree_of(info.parents[0]) if info.parents else None
            for path, (before, after) in j.repo.diff_trees(parent_tree, info.tree).items():
                _registry_path(j, ref, path, before, after, signer, platform, oid)


def _registry_path(j: Judge, ref: str, path: str, before: Entry | None, after: Entry | None,
                   signer: Actor, platform: str, commit: str) -> None:
    if after is not None and not j.content(ref, after):
        return
    top = path.split("/", 1)[0]
    if top in ("contracts", "actors", "assessments") and signer.id != platform:
        j.reject(ref, path, f"{top}/ is written by the platform only, not {signer.id}",
                 "ask the hub operator to publish it")
        return
    if top == "contracts":
        if before is not None:
            j.reject(ref, path, "published contracts are immutable",
                     "publish a new version instead of changing this one")
        elif path.endswith("/contract.yaml") and after is not None:
            try:
                contract = parse_contract(j.repo.blob(after.oid), path)
            except AismmError as exc:
                j.reject(ref, path, f"invalid contract ({str(exc).splitlines()[0]})",
                         "fix it with `aismm contract validate`")
                return
            if path != f"contracts/{contract.id}/{contract.version}/contract.yaml":
                j.reject(ref, path, "folder does not match the contract's id and version",
                         f"put it at contracts/{contract.id}/{contract.version}/")
        return
    if top == "actors":
        if after is None:
            j.reject(ref, path, "actors are revoked, never deleted", "set revoked: true")
            return
        actor = j.document(ref, path, after.oid, Actor)
        if actor is not None and path != f"actors/{actor.id}.yaml":
            j.reject(ref, path, f"file name does not match id {actor.id}",
                     f"name it actors/{actor.id}.yaml")
        elif actor is not None:
            others = load_actors(j.repo, commit)
            holders = [h for k in actor.all_keys()
                       if (h := key_holder(others, k, besides=actor.id)) is not None]
            if holders:
                j.reject(ref, path, f"key already belongs to {holders[0].id}",
                         f"generate a new key for {actor.id}")
            else:
                _actor_history(j, ref, path, before, actor)
        return
    if top == "agents":
        _registry_manifest(j, ref, path, before, after, signer)
        return
    if top == "assessments":
        return
    j.reject(ref, path, "not a registry path", "write under contracts/, actors/, agents/ or "
             "assessments/")


def _actor_history(j: Judge, ref: str, path: str, before: Entry | None, actor: Actor) -> None:
    """An actor document keeps its history: revocation is final and rotated-out keys stay."""
    prev = None
    if before is not None:
        try:
            prev = Actor.model_validate(load_yaml(j.repo.blob(before.oid), path))
        except ValueError:
            prev = None  # an unreadable old version: judge the new one on its own
    had = prev.retired_keys if prev is not None else []
    if prev is not None and prev.revoked and (not actor.revoked or actor.revoked_at !=
                                              prev.revoked_at or actor.key != prev.key):
        j.reject(ref, path, "a revoked actor stays revoked, with its key and revoked_at",
                 "register a new actor")
    elif actor.retired_keys[:len(had)] != had:
        j.reject(ref, path, "retired keys are never changed or dropped",
                 "keep retired_keys and append to them")
    elif prev is not None and actor.key != prev.key and [r.key for r in actor.retired_keys[
            len(had):]] != [prev.key]:
        j.reject(ref, path, "a rotation must move the old key to retired_keys",
                 "use `aismm actor rotate`")
    elif (prev is None or actor.key == prev.key) and len(actor.retired_keys) != len(had):
        j.reject(ref, path, "retired keys are added only by a rotation",
                 "use `aismm actor rotate`")


def _registry_manifest(j: Judge, ref: str, path: str, before: Entry | None,
                       after: Entry | None, signer: Actor) -> None:
    if after is None:
        j.reject(ref, path, "manifests are never deleted", "set capacity or contracts instead")
        return
    manifest = j.document(ref, path, after.oid, Manifest)
    if manifest is None:
        return
    if path != f"agents/{manifest.id}.yaml":
        j.reject(ref, path, f"file name does not match id {manifest.id}",
                 f"name it agents/{manifest.id}.yaml")
        return
    owners = {manifest.owner}
    existing = j.registry.manifests.get(manifest.id)
    if existing is not None:
        owners.add(existing.owner)
    agent = j.registry.actors.get(manifest.id)
    if agent is None:
        j.reject(ref, path, f"agent {manifest.id} is not a registered actor",
                 "register the agent's actor first (`aismm actor add`)")
        return
    if agent.owner != manifest.owner:
        j.reject(ref, f"{path}: owner", f"{manifest.owner} does not own actor {manifest.id} "
                 f"(owner {agent.owner})", "set owner to the actor's registered owner")
        return
    if any(signer.id != o and signer.owner != o for o in owners):
        j.reject(ref, path, f"{signer.id} may not publish a manifest owned by "
                 f"{', '.join(sorted(owners))}", "sign it with the provider's key")


# -- missions ---------------------------------------------------------------------------------
def _judge_mission(j: Judge, updates: list[tuple[str | None, str | None, str]],
                   creating: bool) -> None:
    policy = load_policy(j.repo)
    if policy is None:
        if creating:
            _judge_creation(j, updates)
        else:
            j.reject(updates[0][2] if updates else MAIN, "repository", "has no mission yet",
                     "missions are created with `aismm mission create`")
        return
    after = dict(j.repo.refs())
    for _old, new, ref in updates:
        if new is not None:
            after[ref] = new
    for old, new, ref in updates:
        if new is not None and ref.startswith("refs/heads/"):
            j.bounded(ref, j.repo.new_commits(new, [old] if old else []),
                      j.ctx.limits.max_files)
    for old, new, ref in updates:
        if ref == MAIN:
            j.reject(ref, "ref", "main never changes after the mission is created",
                     "write under your attempt branch instead")
        elif ref.startswith(ATTEMPT):
            _judge_attempt(j, policy, old, new, ref)
        elif ref == ACCEPTED:
            acceptance.judge_acceptance(j, policy, old, new, ref, after)
        elif ref in TAGS:
            acceptance.judge_tag(j, policy, old, new, ref, after)
        else:
            j.reject(ref, "ref", "unknown ref namespace", "push only attempts/<agent>, accepted "
                     "or (platform) the settled/refunded tags")


def _judge_creation(j: Judge, updates: list[tuple[str | None, str | None, str]]) -> None:
    by_ref = {ref: new for _old, new, ref in updates}
    main = by_ref.get(MAIN)
    if main is None or any(old is not None for old, _n, _r in updates):
        j.reject(MAIN, "ref", "a new mission must create main", "use `aismm mission create`")
        return
    info = j.repo.commit(main)
    if info.parents:
        j.reject(MAIN, "commit", "main must be a single root commit", "create it afresh")
    raw = j.repo.read(main, "mission.yaml")
    doc = j.document(MAIN, "mission.yaml", j.repo.flatten(main)["mission.yaml"].oid,
                     MissionDoc) if raw is not None else None
    if doc is None:
        j.reject(MAIN, "mission.yaml", "missing or invalid", "use `aismm mission create`")
        return
    signer = j.commit_signer(MAIN, main, j.registry.by_key)
    if signer is not None and signer.id != doc.client:
        j.reject(MAIN, "commit", f"signed by {signer.id}, not the client {doc.client}",
                 "the client signs its mission")
    for entry in j.repo.flatten(main).values():
        j.content(MAIN, entry)
    allowed = {MAIN, ACCEPTED} | {f"{ATTEMPT}{a}" for a in doc.assignment.agents}
    for ref, new in by_ref.items():
        if ref not in allowed:
            j.reject(ref, "ref", "not a ref of this mission", "create only main, accepted "
                     "and attempts/<assigned agent>")
        elif new != main:
            j.reject(ref, "ref", "must start at main", "point it at main")


def _judge_attempt(j: Judge, policy: MissionPolicy, old: str | None, new: str | None,
                   ref: str) -> None:
    agent_id = _agent_of(ref)
    doc = policy.doc
    if agent_id not in doc.assignment.agents:
        j.reject(ref, "ref", f"{agent_id} is not assigned to this mission",
                 f"push to attempts/<one of {', '.join(doc.assignment.agents)}>")
        return
    if old is None:
        j.reject(ref, "ref", "attempt branches are created with the mission",
                 "push to the existing attempts branch")
        return
    if not j.fast_forward(old, new, ref) or new is None:
        return
    if not j.repo.is_ancestor(policy.main, new):
        j.reject(ref, "history", "does not descend from this mission's main",
                 "clone this mission and build on its attempt branch")
        return
    actors = j.registry.actors
    agent, client = actors.get(agent_id), actors.get(doc.client)
    seen: list[dict[str, str]] = []

    def rivals() -> dict[str, str]:
        """Deliverable trees other agents' attempts hold (tree id -> agent), read once."""
        if not seen:
            trees: dict[str, str] = {}
            for other, tip in j.repo.refs("refs/heads/attempts/").items():
                if other != ref:
                    for c in j.repo.new_commits(tip, [policy.main]):
                        t = j.repo.subtree_id(c, "deliverable")
                        if t is not None:
                            trees.setdefault(t, _agent_of(other))
            seen.append(trees)
        return seen[0]
    # Every commit this branch gains is judged under this branch's rules, including commits
    # already on another ref (a competitor's attempt, accepted): hiding those would let an agent
    # take over someone else's signed delivery by fast-forwarding onto it.
    for oid in j.repo.new_commits(new, [old]):
        info = j.repo.commit(oid)
        if len(info.parents) != 1:
            j.reject(ref, f"commit {oid[:12]}", "merge commits are not allowed on attempts",
                     "rebase onto the attempt branch instead of merging")
            continue
        signer = j.commit_signer(ref, oid, j.registry.by_key)
        if signer is None:
            continue
        changes = j.repo.diff_trees(j.repo.tree_of(info.parents[0]), info.tree)
        tree = j.repo.subtree_id(oid, "deliverable")
        if signer.id == agent_id and tree is not None and tree in rivals():
            j.reject(ref, f"commit {oid[:12]}", f"its deliverable is identical to one "
                     f"{rivals()[tree]} delivered earlier in this mission",
                     "deliver your own work")
            continue
        if policy.contract.steps and signer.id == agent_id:  # a workflow's orchestrator
            decisions = {p: a for p, (b, a) in changes.items() if p.startswith("plan/")
                         and b is None and a is not None and j.content(ref, a)}
            plan.judge_decision_commit(j, policy, ref, oid, decisions, sorted(
                p for p, (b, _a) in changes.items() if p.startswith("plan/") and b is not None))
        for path, (before, after_entry) in changes.items():
            if after_entry is not None and not j.content(ref, after_entry):
                continue
            _attempt_write(j, policy, ref, oid, path, before, after_entry, signer, agent,
                           client, tree)
    _deliverable_limits(j, policy, ref, new)


def _attempt_write(j: Judge, policy: MissionPolicy, ref: str, oid: str, path: str,
                   before: Entry | None, after: Entry | None, signer: Actor,
                   agent: Actor | None, client: Actor | None, tree: str | None) -> None:
    doc = policy.doc
    agent_id = _agent_of(ref)
    who = signer.id
    workflow = bool(policy.contract.steps)
    if who == agent_id:
        if workflow and path.startswith("plan/"):
            return  # judged per commit (aismm.gate.plan)
        if not path.startswith("deliverable/"):
            j.reject(ref, path, f"agent {who} may write only under deliverable/"
                     f"{' and plan/' if workflow else ''}", "move the file under deliverable/")
        return
    # the platform is the client of a workflow's child missions: it files their requests
    if who == j.ctx.platform and not (who == doc.client and path.startswith("requests/")):
        if workflow and path.startswith("orchestration/"):
            if after is None:
                j.reject(ref, path, "orchestration records are never removed",
                         "drop this change")
            else:
                plan.judge_record(j, ref, path, after)
        elif path != "verdicts/platform.yaml":
            j.reject(ref, path, "the platform writes only verdicts/platform.yaml",
                     "drop this change")
        elif after is not None:
            _verdict(j, doc, ref, path, after, who, tree)
        return
    if who == doc.client:
        if not path.startswith("requests/"):
            j.reject(ref, path, f"the client {who} may only add files under requests/",
                     "ask for rework with a requests/<nnn>-rework.yaml file")
        elif before is not None or after is None:
            j.reject(ref, path, "requests are never changed or removed",
                     "add a new request file instead")
        else:
            _request(j, policy, ref, oid, path, after, tree)
        return
    if who == doc.arbiter and "arbiter" in signer.roles:
        if path != "verdicts/arbiter.yaml":
            j.reject(ref, path, "the arbiter writes only verdicts/arbiter.yaml",
                     "drop this change")
        elif after is not None:
            parent = j.repo.commit(oid).parents[0]
            if not any(m and m.group(2) == "escalation" for m in
                       (REQUEST_NAME.match(p) for p in j.repo.flatten(parent))):
                j.reject(ref, path, "no escalation is open on this attempt",
                         "rule only after the client escalates")
            else:
                _verdict(j, doc, ref, path, after, who, tree)
        return
    if "reviewer" in signer.roles:
        if path != f"verdicts/{who}.yaml":
            j.reject(ref, path, f"reviewer {who} may write only verdicts/{who}.yaml",
                     f"put your verdict in verdicts/{who}.yaml")
            return
        if doc.reviewers and who not in doc.reviewers:
            j.reject(ref, path, f"{who} is not a reviewer of this mission",
                     f"the mission's reviewers are {', '.join(doc.reviewers)}")
            return
        conflict = _dependence(signer, agent_id, agent, client)
        if conflict:
            j.reject(ref, path, f"reviewer {who} is not independent ({conflict})",
                     "leave this review to an independent reviewer")
            return
        if after is not None:
            _verdict(j, doc, ref, path, after, who, tree)
        return
    j.reject(ref, path, f"{who} has no write access on {ref}",
             "only the agent, the mission's reviewers, the client, the arbiter and the platform "
             "write here")


def _verdict(j: Judge, doc: MissionDoc, ref: str, path: str, entry: Entry, who: str,
             tree: str | None) -> None:
    verdict = j.document(ref, path, entry.oid, Verdict)
    if verdict is None:
        return
    if verdict.mission != doc.id:
        j.reject(ref, f"{path}: mission", f"names mission {verdict.mission}, not {doc.id}",
                 "write a verdict for this mission (replays are refused)")
    if verdict.reviewer != who:
        j.reject(ref, f"{path}: reviewer", f"names {verdict.reviewer} but is signed by {who}",
                 "set reviewer to your own id")
    if verdict.deliverable_tree != tree:
        j.reject(ref, f"{path}: deliverable_tree", f"{verdict.deliverable_tree[:12]} is not the "
                 f"current deliverable tree {str(tree)[:12]}",
                 "review the current deliverable (git rev-parse HEAD:deliverable)")
    arbiter = path == "verdicts/arbiter.yaml"
    if arbiter != (verdict.verdict in ("release", "refund")):
        j.reject(ref, f"{path}: verdict", f"{verdict.verdict!r} is not allowed here",
                 "arbiters rule release|refund; reviewers and the platform judge pass|fail")


def _request(j: Judge, policy: MissionPolicy, ref: str, oid: str, path: str, entry: Entry,
             tree: str | None) -> None:
    match = REQUEST_NAME.match(path)
    if match is None:
        j.reject(ref, path, "request file name must be requests/<nnn>-<rework|escalation>.yaml",
                 "name it like requests/001-rework.yaml")
        return
    request = j.document(ref, path, entry.oid, Request)
    if request is None:
        return
    parent = j.repo.commit(oid).parents[0]
    earlier = [m for m in (REQUEST_NAME.match(p) for p in j.repo.flatten(parent)) if m]
    if int(match.group(1)) != len(earlier) + 1:
        j.reject(ref, path, f"request number must be {len(earlier) + 1:03d}",
                 "number requests consecutively")
    if request.kind != match.group(2):
        j.reject(ref, f"{path}: kind", "does not match the file name", "make them agree")
    if request.mission != policy.doc.id:
        j.reject(ref, f"{path}: mission", f"names mission {request.mission}",
                 "write a request for this mission")
    if tree is None or request.deliverable_tree != tree:
        j.reject(ref, f"{path}: deliverable_tree", "is not the current deliverable tree",
                 "request rework on the current deliverable")
    reworks = sum(1 for m in earlier if m.group(2) == "rework") + (request.kind == "rework")
    if request.kind == "rework" and reworks > policy.contract.sla.max_rework:
        j.reject(ref, path, f"rework #{reworks} exceeds max_rework "
                 f"{policy.contract.sla.max_rework}", "accept, or escalate to the arbiter")
    need = policy.contract.disputes.escalate_after_reworks
    if request.kind == "escalation" and reworks < need:
        j.reject(ref, path, f"escalation after {reworks} rework request(s); the contract allows "
                 f"it after {need}", "ask for a rework first")


def _deliverable_limits(j: Judge, policy: MissionPolicy, ref: str, tip: str) -> None:
    """The contract's rules on the deliverable the attempt's tip holds (:mod:`aismm.core.files`);
    required files are left to the DoD, since an attempt may be delivered over several pushes."""
    files = j.repo.flatten(tip)
    contract = policy.contract
    deliverable = {p: e for p, e in files.items() if p.startswith("deliverable/")}
    # links and gitlinks are refused per commit; they have no blob to measure or read
    regular = {p for p, e in deliverable.items() if e.mode in (MODE_FILE, MODE_EXEC)}
    sizes = {p: j.repo.blob_size(e.oid) if p in regular else 0 for p, e in deliverable.items()}
    for problem in layout_problems(contract, "deliverable", sizes, required=False, show=shown,
                                   around=[p for p in files if p not in deliverable]):
        j.reject(ref, shown(problem.path), problem.what, problem.fix)
    documents = {p: j.repo.blob(deliverable[p].oid) if p in regular else None
                 for p, _schema in schema_targets(contract, "deliverable", deliverable)}
    for problem in document_problems(contract, "deliverable", documents, policy.schemas,
                                     per_file=5):
        j.reject(ref, problem.path, problem.what, problem.fix)
