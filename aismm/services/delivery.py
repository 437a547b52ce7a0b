"""A delivery: hosted agents run, and each deliverable gets its DoD and reviews, committed back.

Also runs hosted agents (``mission run``) and reacts to client requests (rework, escalation).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel

from aismm.core.actor import Manifest
from aismm.core.document import Verdict
from aismm.core.errors import ConflictError, GateRejection, MissionError
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.safepath import printable
from aismm.infra import sandbox
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import dod, executions
from aismm.services.attempts import write_to_attempt
from aismm.services.mission import ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import MissionPolicy, dependence, read_verdict

__all__ = [
    "check",
    "dispatch",
    "failed_attempts",
    "fresh_reviewer",
    "is_hosted",
    "pick_reviewers",
    "review",
    "run_agent",
    "run_on_attempt",
]

_FAILED = re.compile(r"^aismm: (?P<agent>[^\s:]+): attempt failed \((?P<reason>.*)\); "
                     r"nothing committed$")


def is_hosted(hub: Hub, actor_id: str) -> bool:
    """Whether the hub runs this agent itself (a command or http runtime and a hub-held key)."""
    return _hosted_manifest(hub, actor_id) is not None


def _hosted_manifest(hub: Hub, actor_id: str) -> Manifest | None:
    man = registry.manifests(hub).get(actor_id)
    if man is None or man.runtime.kind == "git" or not hub.key_path(actor_id).is_file():
        return None
    return man


def run_agent(hub: Hub, man: Manifest, checkout: Path, env: dict[str, str],
              writable: tuple[Path, ...] = ()) -> tuple[bool, str]:
    """Invoke a hosted agent's runtime on a checkout; (ok, detail)."""
    if man.runtime.kind == "http":
        import urllib.request  # noqa: PLC0415 - http, ssl and email only for an http runtime

        files = {p.relative_to(checkout).as_posix(): p.read_text(errors="replace")
                 for p in checkout.rglob("*") if p.is_file()}
        body = json.dumps({"env": env, "files": files}).encode()
        req = urllib.request.Request(man.runtime.url or "", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=man.runtime.timeout_seconds) as resp:
                answer = json.loads(resp.read(8 << 20))
            for path, text in dict(answer.get("files", {})).items():
                target = (checkout / path).resolve()
                if not str(target).startswith(str(checkout.resolve()) + "/"):
                    return False, f"http runtime wrote outside the checkout: {path}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(str(text))
            return True, "http ok"
        except Exception as exc:  # a failing agent is an outcome, not a crash
            return False, f"http runtime failed: {exc}"
    argv = [sandbox.PYTHON if a == "{python}" else a for a in man.runtime.argv or []]
    limits = sandbox.Limits(timeout_seconds=man.runtime.timeout_seconds,
                            cpu_seconds=int(man.runtime.timeout_seconds) + 1)
    result = sandbox.run(argv, checkout, limits=limits, env=dod.python_env(env),
                         hidden_paths=[hub.root], writable_paths=writable)
    if result.ok:
        return True, "ok"
    why = "timed out" if result.timed_out else f"exit {result.returncode}"
    return False, f"{why}: {(result.stderr or result.stdout).strip()[-300:]}"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def run_on_attempt(hub: Hub, man: Manifest, repo: Repo, tip: str, env: dict[str, str]
                   ) -> tuple[bool, str, dict[str, bytes | None]]:
    """Run a hosted agent in the sandbox on a checkout of ``tip``: (ok, detail, the files it
    changed: path -> new bytes, None where it removed one)."""
    with sandbox.workspace(f"{env.get('AISMM_ROLE', 'agent')}-") as tmp:
        checkout = Path(tmp)
        repo.export(tip, checkout)
        before = _snapshot(checkout)
        ok, detail = run_agent(hub, man, checkout, env)
        after = _snapshot(checkout)
    changed = {p: after.get(p) for p in set(before) | set(after) if before.get(p) != after.get(p)}
    return ok, detail, changed


def dispatch(hub: Hub, mission_id: str, agents: list[str] | None = None,
             request: str | None = None) -> list[str]:
    """Run the mission's hosted specialists and commit what they deliver; summary lines."""
    repo, policy = open_mission(hub, mission_id)
    lines = []
    for agent in agents or policy.doc.assignment.agents:
        man = _hosted_manifest(hub, agent)
        if man is None:
            lines.append(f"aismm: {agent}: external agent; it delivers by git push")
            continue
        tip = repo.ref(f"{ATTEMPT}{agent}")
        if tip is None:
            raise MissionError(f"{agent}: no attempt branch; assign the agent first")
        env = {"AISMM_ACTOR": agent, "AISMM_MISSION": mission_id,
               "AISMM_CONTRACT": policy.doc.contract.ref, "AISMM_ROLE": "specialist"}
        if request:
            env["AISMM_REQUEST"] = request
        ok, detail, changed = run_on_attempt(hub, man, repo, tip, env)
        outside = sorted(p for p in changed if not p.startswith("deliverable/"))
        if not ok or outside or not changed:
            why = detail if not ok else (f"wrote outside deliverable/: {', '.join(outside[:3])}"
                                         if outside else "delivered nothing")
            lines.append(_record_failure(hub, mission_id, agent, why))
            continue
        try:
            new = write_to_attempt(hub, repo, agent, changed,
                                   "Rework deliverable\n" if request else "Deliver\n", agent)
        except GateRejection as exc:
            first = str(exc.problems[0]).removeprefix("aismm: ")
            lines.append(_record_failure(hub, mission_id, agent,
                                         f"delivery refused by the gate: {first}"))
            continue
        lines.append(f"aismm: {agent} delivered {new[:12]} (deliverable "
                     f"{(repo.subtree_id(new, 'deliverable') or '-')[:12]})")
    return lines


def _record_failure(hub: Hub, mission_id: str, agent: str, why: str) -> str:
    """A failed hosted run is an execution outcome: it feeds reputation and shows as the
    attempt's ``failure`` in ``mission status``. Returns the line to print.

    ``why`` may carry the agent's own output (stderr, file names): it is escaped into one
    printable line before it is stored or printed.
    """
    reason = printable(why, limit=300)
    executions.record_execution(hub, mission_id, agent, "failed", detail=reason)
    return f"aismm: {agent}: attempt failed ({reason}); nothing committed"


def failed_attempts(lines: list[str]) -> list[dict[str, str]]:
    """The attempts :func:`dispatch` reported as failed, as ``{"agent", "reason"}``."""
    return [m.groupdict() for m in map(_FAILED.match, lines) if m]


def pick_reviewers(hub: Hub, policy: MissionPolicy, agent: str) -> list[str]:
    """The mission's reviewers, or independent hosted reviewers serving the contract."""
    doc = policy.doc
    if doc.reviewers:
        return list(doc.reviewers)
    snap = registry.snapshot(Repo(hub.registry_path))
    agent_actor, client = snap.actors.get(agent), snap.actors.get(doc.client)
    out = []
    for rid, man in sorted(snap.manifests.items()):
        actor = snap.actors.get(rid)
        if actor is None or "reviewer" not in actor.roles or doc.contract.ref not in \
                man.contracts or _hosted_manifest(hub, rid) is None:
            continue
        if dependence(actor, agent, agent_actor, client) is None:
            out.append(rid)
    return out[:max(1, policy.contract.dod.review.quorum)]


def check(hub: Hub, mission_id: str, agent: str) -> list[str]:
    """Run the DoD checks and the reviewers on an attempt's current deliverable (idempotent)."""
    repo, policy = open_mission(hub, mission_id)
    platform = hub.config.platform
    tip = repo.ref(f"{ATTEMPT}{agent}")
    tree = repo.subtree_id(tip, "deliverable") if tip else None
    if tip is None or tree is None:
        return []
    lines = []
    current = read_verdict(repo, tip, "verdicts/platform.yaml")
    if current is None or current.deliverable_tree != tree:
        with sandbox.workspace("dod-") as tmp:
            repo.export(tip, Path(tmp))
            checks = dod.run_checks(hub, policy, Path(tmp))
        # A check's detail is the tail of a command run on the agent's files: no raw controls.
        checks = [c.model_copy(update={"detail": printable(c.detail, keep="\n\t")})
                  for c in checks]
        passed = all(c.status == "pass" for c in checks)
        verdict = Verdict(mission=mission_id, reviewer=platform, deliverable_tree=tree,
                          verdict="pass" if passed else "fail", score=dod.score(checks),
                          checks=checks, comments="automatic DoD checks")
        try:
            write_to_attempt(hub, repo, agent, {"verdicts/platform.yaml": _doc(verdict)},
                             f"DoD {verdict.verdict} on {tree[:12]}\n", platform,
                             expect_tree=tree)
        except ConflictError:
            return [f"aismm: {agent}: deliverable changed during assessment; re-assessing later"]
        failed = [c.name for c in checks if c.status != "pass"]
        lines.append(f"aismm: platform DoD on {agent}: {verdict.verdict.upper()} "
                     f"({verdict.score}/100" + (f"; failed: {', '.join(failed)}" if failed
                                                else "") + ")")
    for rid in pick_reviewers(hub, policy, agent):
        tip = repo.ref(f"{ATTEMPT}{agent}")
        if tip is None:
            break
        existing = read_verdict(repo, tip, f"verdicts/{rid}.yaml")
        if existing is not None and existing.deliverable_tree == tree:
            continue
        lines.append(review(hub, repo, policy, agent, rid, tip, tree)[1])
    return lines


def review(hub: Hub, repo: Repo, policy: MissionPolicy, agent: str, rid: str, tip: str,
           tree: str) -> tuple[Verdict | None, str]:
    """Run hosted reviewer ``rid`` on the attempt at ``tip`` and commit its verdict; (the
    committed verdict or None, one line saying what happened)."""
    mission_id = policy.doc.id
    man = _hosted_manifest(hub, rid)
    if man is None:
        return None, f"aismm: reviewer {rid} is external; it pushes verdicts/{rid}.yaml"
    with sandbox.workspace("review-") as tmp:
        checkout = Path(tmp) / "checkout"
        checkout.mkdir()
        repo.export(tip, checkout)
        output = Path(tmp) / "out" / "verdict.yaml"
        output.parent.mkdir()
        env = {"AISMM_ACTOR": rid, "AISMM_MISSION": mission_id, "AISMM_ROLE": "reviewer",
               "AISMM_CONTRACT": policy.doc.contract.ref, "AISMM_OUTPUT": str(output)}
        ok, detail = run_agent(hub, man, checkout, env, writable=(output.parent,))
        produced = output.read_bytes() if output.is_file() else None
    verdict_or_error = _review(mission_id, rid, tree, produced) if ok else detail
    if isinstance(verdict_or_error, str):
        return None, f"aismm: reviewer {rid} failed ({printable(verdict_or_error, limit=200)})"
    try:
        write_to_attempt(hub, repo, agent, {f"verdicts/{rid}.yaml": _doc(verdict_or_error)},
                         f"Review by {rid}: {verdict_or_error.verdict}\n", rid,
                         expect_tree=tree)
    except (ConflictError, GateRejection) as exc:
        return None, f"aismm: reviewer {rid}'s verdict not committed ({printable(exc, limit=300)})"
    return verdict_or_error, (f"aismm: reviewer {rid} on {agent}: "
                              f"{verdict_or_error.verdict.upper()} ({verdict_or_error.score}/100)")


def fresh_reviewer(hub: Hub, policy: MissionPolicy, agent: str, tip: str) -> str | None:
    """A hosted reviewer independent of the agent and the client who has never reviewed this
    attempt (among the mission's own reviewers when it names them); None when there is none."""
    repo = Repo(hub.mission_path(policy.doc.id))
    reviewed = {p[len("verdicts/"):-len(".yaml")] for p in repo.flatten(tip)
                if p.startswith("verdicts/")}
    snap = registry.snapshot(Repo(hub.registry_path))
    agent_actor, client = snap.actors.get(agent), snap.actors.get(policy.doc.client)
    named = list(policy.doc.reviewers)
    for rid, man in sorted(snap.manifests.items()):
        actor = snap.actors.get(rid)
        if actor is None or "reviewer" not in actor.roles or rid in reviewed \
                or rid == policy.doc.arbiter or policy.doc.contract.ref not in man.contracts \
                or (named and rid not in named) or _hosted_manifest(hub, rid) is None:
            continue
        if dependence(actor, agent, agent_actor, client) is None:
            return rid
    return None


def _review(mission_id: str, rid: str, tree: str, produced: bytes | None) -> Verdict | str:
    if produced is None:
        return "wrote no verdict"
    try:
        data = load_yaml(produced, "verdict")
        if not isinstance(data, dict):
            return "verdict is not a mapping"
        return Verdict(mission=mission_id, reviewer=rid, deliverable_tree=tree,
                       verdict=data.get("verdict"), score=data.get("score"),
                       rubric=data.get("rubric") or {},
                       comments=printable(data.get("comments", ""), keep="\n\t"))
    except (ValueError, TypeError) as exc:
        return f"malformed verdict: {str(exc).splitlines()[0]}"


def _doc(model: BaseModel) -> bytes:
    return dump_yaml(model.model_dump(mode="json")).encode()


