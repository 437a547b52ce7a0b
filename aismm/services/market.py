"""The marketplace: agent manifests, assessment before listing, the listing and routing."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import ValidationError

from aismm.core.actor import Manifest
from aismm.core.assessment import AssessmentRecord
from aismm.core.contract import Contract
from aismm.core.errors import ActorError, UsageError
from aismm.core.model import describe_validation, dump_yaml, load_yaml
from aismm.core.reputation import Execution, Reputation, compute
from aismm.core.routing import Candidate, exclusions, rank
from aismm.core.safepath import printable
from aismm.core.signing import PrivateKey
from aismm.infra import sandbox
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.store import Store
from aismm.services import (
    delivery,
    dod,
    judged,
    lifecycle,
    mission,
    offers,
    registrar,
    reviewbench,
    scoring,
)
from aismm.state import registry
from aismm.state.policy import read_verdict

__all__ = ["REFERENCE_PROVIDERS", "Assessment", "ExcludedRow", "ListingRow", "RankedRow",
           "RankingRow", "TaskResult", "assess", "listing", "load_manifest", "pick", "ranking",
           "register_manifest", "register_reference_agents", "task_reason"]

REFERENCE_PROVIDERS = ("acme", "qa-guild", "cheapo")

Job = tuple[Contract, dict[str, bytes], str]  # a contract, its frozen files, one benchmark task
# an external agent's benchmark mission: its job, the mission, when it was offered (monotonic
# seconds and the ref-state log's instant)
Opened = tuple[Contract, dict[str, bytes], str, mission.Created, float, str | None]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ListingRow:
    """One agent of the listing: the manifest's figures, the latest assessment's status, badge
    and quality, and the reputation's figures (:class:`Reputation`, without ``agent``).

    Without execution records the quality shown is the assessed one and the other figures are
    None or 0; ``quality_basis`` says which (docs/reputation.md).
    """

    agent: str
    owner: str
    roles: tuple[str, ...]
    contracts: tuple[str, ...]
    status: str
    badge: str | None
    price: int
    capacity: int
    assessed_quality: int | float | None
    executions: int
    quality: int | float | None
    quality_lcb: float | None
    speed_p50: float | None
    cost_per_accepted: float | None
    acceptance_rate: float | None
    stars: float | None
    rank: float | None
    trend_30d: float | None
    delivered: int
    accepted: int
    decided: int
    quality_basis: Literal["executions", "assessment"] | None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON, in field order (agent list --json, /api/agents)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}


@dataclass(frozen=True)
class RankedRow:
    """An eligible agent of a ranking: its routing score and every input behind it."""

    agent: str
    score: float
    reputation: float
    price_score: float
    load_score: float
    inputs: dict[str, Any]  # core.routing's inputs, free-form by design: every figure it used
    eligible: Literal[True] = True

    def to_json(self) -> dict[str, Any]:
        """The row as JSON (agent rank --json, /api/rank)."""
        return {"agent": self.agent, "score": self.score, "reputation": self.reputation,
                "price_score": self.price_score, "load_score": self.load_score,
                "inputs": self.inputs, "eligible": True}


@dataclass(frozen=True)
class ExcludedRow:
    """An agent a ranking leaves out, and why."""

    agent: str
    why: str
    eligible: Literal[False] = False

    def to_json(self) -> dict[str, Any]:
        """The row as JSON (agent rank --json, /api/rank)."""
        return {"agent": self.agent, "eligible": False, "why": self.why}


# A ranking row: eligible ones carry the score and its inputs, the others why they are out
RankingRow = RankedRow | ExcludedRow


class TaskResult(TypedDict):
    """One benchmark task of an assessment, as recorded."""

    contract: str
    task: str
    dod: str
    quality: int
    mission: NotRequired[str]  # the benchmark mission an external agent delivered to
    offered_at: NotRequired[str | None]  # when that mission was offered: its seconds start there
    seconds: float
    misses: list[str]
    failed_checks: list[str]


class Assessment(TypedDict):
    """The platform-signed assessment record ``assessments/<agent>/<n>.yaml`` as written (read
    back as :class:`AssessmentRecord`)."""

    schema_version: int
    agent: str
    n: int
    status: str
    badge: str | None
    quality: float
    p50_seconds: float
    cost: int
    reasons: list[str]
    tasks: list[TaskResult | reviewbench.ReviewResult]  # reviewers: reviewer-benchmark cases
    at: str


def load_manifest(text: bytes | str, where: str) -> Manifest:
    try:
        return Manifest.model_validate(load_yaml(text, where))
    except ValidationError as exc:
        raise UsageError("\n".join(f"{where}: {line}; see `aismm schema export`"
                                   for line in describe_validation(exc))) from exc
    except ValueError as exc:
        raise UsageError(f"{exc}; fix the YAML") from exc


def register_manifest(hub: Hub, manifest: Manifest, provider: str | None = None,
                      hosted: bool = False, key: PrivateKey | None = None) -> Manifest:
    """Commit a manifest to registry.git signed by its provider (registering a hosted actor)."""
    provider = provider or manifest.owner
    signer = registry.actor(hub, provider)
    contracts = registry.contracts(hub)
    for ref in manifest.contracts:
        if ref not in contracts:
            raise UsageError(f"{manifest.id}: contracts: {ref} is not published; see "
                             "`aismm contract list`")
    agent = registry.actors(hub).get(manifest.id)
    if agent is not None and agent.owner != manifest.owner:
        raise ActorError(f"{manifest.id}: owner: {manifest.owner} does not own actor "
                         f"{manifest.id} (owner {agent.owner}); set owner to the actor's "
                         "registered owner")
    if agent is None:
        if not hosted:
            raise ActorError(f"{manifest.id}: not a registered actor; register it with "
                             "`aismm actor add` (or --hosted) first")
        if manifest.owner not in (signer.id, signer.owner):
            # Checked before the actor is created: the gate would refuse the manifest only
            # after the registry had already gained the agent's actor.
            raise ActorError(f"{manifest.id}: {provider} may not publish a manifest owned by "
                             f"{manifest.owner}; sign it as {manifest.owner} (--as)")
        registrar.add_actor(hub, manifest.id, list(manifest.roles), manifest.owner, None, True)
    registrar.commit_files(hub, {f"agents/{manifest.id}.yaml": dump_yaml(
        manifest.model_dump(mode="json")).encode()}, f"Publish manifest {manifest.id}\n",
        provider, key)
    return manifest


def register_reference_agents(hub: Hub, assess_them: bool = True,
                              progress: Progress | None = None) -> list[str]:
    """Register the bundled reference agents as hosted agents (and assess them)."""
    folder = Path(__file__).resolve().parent.parent / "agents" / "manifests"
    known = registry.actors(hub)
    for provider in REFERENCE_PROVIDERS:
        if provider not in known:
            registrar.add_actor(hub, provider, ["client"], None, None, True)
    ids = []
    for path in sorted(folder.glob("*.yaml")):
        man = load_manifest(path.read_bytes(), str(path))
        register_manifest(hub, man, man.owner, hosted=True)
        ids.append(man.id)
    if assess_them:  # specialists on their benchmark, reviewers on the reviewer benchmark
        for agent in ids:
            if registry.manifests(hub)[agent].roles == ["orchestrator"]:
                continue  # assessed on workflow runs (aismm.services.workflowbench)
            assess(hub, agent, progress=progress)
    return ids


def _task_layout(contract_files: dict[str, bytes], task: str, dest: Path, man: Manifest,
                 contract_ref: str) -> None:
    for path, data in contract_files.items():
        if path == "contract.yaml" or path.startswith("schemas/"):
            target = dest / path
        elif path.startswith(f"benchmark/{task}/inputs/"):
            target = dest / "inputs" / path[len(f"benchmark/{task}/inputs/"):]
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (dest / "README.md").write_text(f"Assessment task {task} of {contract_ref} for {man.id}\n")


def assess(hub: Hub, agent: str, progress: Progress | None = None,
           timeout: float | None = None) -> AssessmentRecord:
    """Run the contract benchmark suites against an agent; commit a platform-signed record."""
    man = registry.manifests(hub).get(agent)
    if man is None:
        raise UsageError(f"{agent}: no manifest; publish one with `aismm agent register`")
    sandbox.isolation()  # scoring runs agent code: no sandbox here is the hub's fault, not theirs
    reviewer = "reviewer" in man.roles
    specialist = "specialist" in man.roles or not reviewer
    jobs: list[Job] = []
    for ref in man.contracts if specialist else []:
        contract, files, _sha = registry.resolve_contract(hub, ref)
        tasks = sorted({p.split("/")[1] for p in files if p.startswith("benchmark/")})
        jobs += [(contract, files, task) for task in tasks]
    if not specialist:
        results: list[TaskResult] = []
    elif man.runtime.kind == "git":
        results = _assess_external(hub, man, jobs, timeout or 600.0, progress)
    else:
        results = _assess_hosted(hub, man, jobs, progress)
    durations = [r["seconds"] for r in results]
    qualities = [r["quality"] for r in results]
    quality = round(statistics.mean(qualities), 1) if qualities else 0.0
    p50 = round(statistics.median(durations), 3) if durations else 0.0
    reasons: list[str] = []
    # Each contract's thresholds judge that contract's tasks (not the first contract's for all).
    benches = {c.ref: c.benchmark for c, _, _ in jobs}
    for ref in man.contracts if specialist else []:
        if ref not in benches:
            benches[ref] = registry.resolve_contract(hub, ref)[0].benchmark
    for ref, bench in benches.items():
        where = f"{ref}: " if len(benches) > 1 else ""
        mine = [r for r in results if r["contract"] == ref]
        q = round(statistics.mean(r["quality"] for r in mine), 1) if mine else 0.0
        p = round(statistics.median(r["seconds"] for r in mine), 3) if mine else 0.0
        if q < bench.quality:
            reasons.append(f"{where}quality {q} < {bench.quality}")
        if p > bench.p50_seconds:
            reasons.append(f"{where}p50 {p}s > {bench.p50_seconds}s")
        if man.price > bench.max_cost:
            reasons.append(f"{where}price {man.price} > max_cost {bench.max_cost}")
    if any(r["dod"] != "pass" for r in results):
        reasons.append("DoD failed on " + ", ".join(r["task"] for r in results
                                                     if r["dod"] != "pass"))
    done: list[TaskResult | reviewbench.ReviewResult] = [*results]
    if reviewer:  # reviewers are assessed on the reviewer benchmark: are their verdicts right?
        review = reviewbench.assess(hub, man, progress)
        done += review.results
        reasons += review.reasons
        quality = min(quality, review.quality) if specialist else review.quality
        durations += [r["seconds"] for r in review.results]
        p50 = round(statistics.median(durations), 3) if durations else 0.0
    previous = registry.assessments(hub).get(agent, [])
    written: Assessment = {
        "schema_version": 1, "agent": agent, "n": len(previous) + 1,
        "status": "listed" if not reasons else "rejected",
        "badge": ("gold" if quality >= 90 else "silver" if quality >= 80 else "bronze")
        if not reasons else None, "quality": quality, "p50_seconds": p50,
        "cost": man.price, "reasons": reasons, "tasks": done,
        "at": hub.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}
    record = AssessmentRecord.model_validate(written)  # what readers will load, checked first
    registrar.commit_files(hub, {f"assessments/{agent}/{record.n:04d}.yaml":
                                dump_yaml(record.to_json()).encode()},
                          f"Assess {agent}: {record.status}\n", hub.config.platform)
    return record


def _assess_hosted(hub: Hub, man: Manifest, jobs: list[Job],
                   progress: Progress | None) -> list[TaskResult]:
    """Run every benchmark task of a hosted agent, in parallel sandboxes."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - and logging: only here

    workers = max(1, min(4, 2 * (os.cpu_count() or 1)))
    results: list[TaskResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_assess_task, hub, man, c, f, t) for c, f, t in jobs]
        for i, future in enumerate(futures, 1):
            results.append(future.result())
            if progress:
                r = results[-1]
                progress(f"[{i}/{len(jobs)}] {man.id} on {r['contract']} task {r['task']}: "
                         f"DoD {r['dod']}, quality {r['quality']}")
    return results


def _assess_external(hub: Hub, man: Manifest, jobs: list[Job], timeout: float,
                     progress: Progress | None) -> list[TaskResult]:
    """Open one unfunded benchmark mission per task; wait for the agent to deliver by git."""
    opened: list[Opened] = []
    for contract, files, task in jobs:
        with tempfile.TemporaryDirectory(prefix="aismm-task-") as tmp:
            inputs = Path(tmp)
            prefix = f"benchmark/{task}/inputs/"
            for path, data in files.items():
                if path.startswith(prefix):
                    (inputs / path[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
                    (inputs / path[len(prefix):]).write_bytes(data)
            created = mission.create(hub, contract_ref=contract.ref, client=hub.config.platform,
                                     inputs=inputs, price=None, tier="T0", agents=[man.id],
                                     benchmark=True)
        # The creation is logged and offered (inbox, notify URL): the agent's clock starts now.
        offered = time.monotonic()
        with Store(hub.db_path) as store:
            offered_at = offers.offer_time(store, created.doc.id)
        opened.append((contract, files, task, created, offered, offered_at))
        if progress:
            progress(f"benchmark mission {created.doc.id} ({contract.ref} task {task}) waits for "
                     f"{man.id}: git clone {created.path}")
    deadline = time.monotonic() + timeout
    done: dict[str, TaskResult] = {}
    # When each deliverable tree first reached the agent's attempt, watched apart from the
    # scoring below so that scoring one task never delays the arrival time of another.
    arrived: dict[tuple[str, str], float] = {}
    watching = threading.Event()
    watcher = threading.Thread(target=_watch_arrivals, name="aismm-arrivals", daemon=True,
                               args=([o[3] for o in opened], man.id, arrived, watching))
    watcher.start()
    try:
        _collect(hub, man, opened, done, arrived, deadline, progress)
    finally:
        watching.set()
        watcher.join()
    results: list[TaskResult] = []
    for contract, _files, task, created, _offered, offered_at in opened:
        results.append(done.get(created.doc.id) or {
            "contract": contract.ref, "task": task, "dod": "fail", "quality": 0,
            "mission": created.doc.id, "offered_at": offered_at, "seconds": round(timeout, 3),
            "misses": [f"no delivery within {timeout:g}s"], "failed_checks": []})
    return results


def _watch_arrivals(created: list[mission.Created], agent: str,
                    arrived: dict[tuple[str, str], float], stop: threading.Event) -> None:
    """Note when each deliverable tree first appears on the agent's attempts until ``stop``."""
    while True:
        _note_arrivals(created, agent, arrived)
        if stop.wait(0.05):
            return


def _note_arrivals(created: list[mission.Created], agent: str,
                   arrived: dict[tuple[str, str], float]) -> None:
    now = time.monotonic()
    for made in created:
        repo = Repo(made.path)
        tip = repo.ref(f"refs/heads/attempts/{agent}")
        tree = repo.subtree_id(tip, "deliverable") if tip else None
        if tree is not None:
            arrived.setdefault((made.doc.id, tree), now)


def _collect(hub: Hub, man: Manifest, opened: list[Opened], done: dict[str, TaskResult],
             arrived: dict[tuple[str, str], float], deadline: float,
             progress: Progress | None) -> None:
    """Score each benchmark delivery once its platform verdict is in, until all are or the
    deadline passes; its seconds run from the offer to the deliverable's arrival."""
    while len(done) < len(opened) and time.monotonic() < deadline:
        for contract, files, task, created, offered, offered_at in opened:
            if created.doc.id in done:
                continue
            repo = Repo(created.path)
            tip = repo.ref(f"refs/heads/attempts/{man.id}") or created.main
            tree = repo.subtree_id(tip, "deliverable")
            verdict = read_verdict(repo, tip, "verdicts/platform.yaml")
            if tree is None or verdict is None or verdict.deliverable_tree != tree:
                continue
            _note_arrivals([created], man.id, arrived)  # in case the watcher has not yet
            delivered = arrived[(created.doc.id, tree)]
            with sandbox.workspace("score-") as tmp:
                repo.export(tip, Path(tmp) / "checkout")
                task_dir = Path(tmp) / "task"
                _write_task(files, task, task_dir)
                score, misses = scoring.evaluate(contract.id, task_dir,
                                                 Path(tmp) / "checkout" / "deliverable",
                                                 hidden=[hub.root])
            passed = verdict.verdict == "pass"
            done[created.doc.id] = {
                "contract": contract.ref, "task": task, "dod": "pass" if passed else "fail",
                "quality": score if passed else min(score, 40), "mission": created.doc.id,
                "offered_at": offered_at, "seconds": round(max(0.0, delivered - offered), 3),
                "misses": [printable(m, limit=300) for m in misses[:5]],
                "failed_checks": [c.name for c in verdict.checks if c.status != "pass"]}
            if progress:
                progress(f"[{len(done)}/{len(opened)}] {man.id} delivered {task}: DoD "
                         f"{done[created.doc.id]['dod']}")
        time.sleep(0.2)


def _write_task(files: dict[str, bytes], task: str, task_dir: Path) -> None:
    """Lay out benchmark task ``task`` for scoring: its files, without the golden answer."""
    for path, data in files.items():
        if path.startswith(f"benchmark/{task}/") and "/golden/" not in path:
            target = task_dir / path[len(f"benchmark/{task}/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _assess_task(hub: Hub, man: Manifest, contract: Contract, files: dict[str, bytes], task: str
                 ) -> TaskResult:
    """Run one benchmark task in a sandboxed checkout; score DoD and expectations."""
    ref = contract.ref
    with sandbox.workspace("assess-") as tmp:
        root = Path(tmp) / "checkout"
        root.mkdir()
        _task_layout(files, task, root, man, ref)
        env = {"AISMM_ACTOR": man.id, "AISMM_MISSION": f"assess-{task}",
               "AISMM_CONTRACT": ref, "AISMM_ROLE": "specialist"}
        started = time.monotonic()
        ok, detail = delivery.run_agent(hub, man, root, env)
        seconds = time.monotonic() - started
        schemas = {p: files[p] for p in contract.schema_paths()}
        checks = dod.run(contract, schemas, root, hidden=(hub.root,)) if ok else []
        dod_pass = ok and all(c.status == "pass" for c in checks)
        task_dir = Path(tmp) / "task"
        _write_task(files, task, task_dir)
        score, misses = scoring.evaluate(contract.id, task_dir, root / "deliverable",
                                         hidden=[hub.root]) \
            if ok and (root / "deliverable").is_dir() else (0, [detail])
    misses = [printable(m, limit=300) for m in misses[:5]]  # may quote the agent's output
    return {"contract": ref, "task": task, "dod": "pass" if dod_pass else "fail",
            "quality": score if dod_pass else min(score, 40), "seconds": round(seconds, 3),
            "misses": misses, "failed_checks": [c.name for c in checks
                                                if c.status != "pass"]}


def task_reason(task: Mapping[str, Any]) -> str | None:
    """Why a benchmark task failed, first reason only (None when its DoD passed); for a
    reviewer-benchmark case, why the reviewer's verdict is wrong (None when it is right)."""
    if reviewbench.is_review(task):
        return None if task["verdict"] == task["expected"] else \
            printable((task["misses"] or ["wrong verdict"])[0], limit=300)
    if task.get("dod") == "pass":
        return None
    if task.get("failed_checks"):
        return f"DoD check {task['failed_checks'][0]} failed"
    misses = task.get("misses") or []
    return printable(misses[0], limit=300) if misses else "DoD failed"


def _reputations(hub: Hub, contract: str | None) -> dict[str, Reputation]:
    with Store(hub.db_path) as store:
        rows = store.executions()
    records = [Execution.of(r) for r in rows]
    return compute(records, hub.clock.now(), contract=contract)


def _open_attempts(hub: Hub) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in lifecycle.list_missions(hub):
        if row.state not in ("settled", "refunded", "accepted", "expired"):
            for agent in row.agents:
                counts[agent] = counts.get(agent, 0) + 1
    return counts


def listing(hub: Hub, contract: str | None = None, role: str | None = None
            ) -> list[ListingRow]:
    """The marketplace listing: status, badge, price, reputation figures.

    The registry part is read at the judged registry tip, from the catalog cached per tip
    (:func:`aismm.state.registry.catalog`); the reputation figures from the execution records.
    """
    judged.ensure_registry(hub)
    reps = _reputations(hub, contract)
    rows: list[ListingRow] = []
    for entry in registry.catalog(hub):
        if contract and not any(c == contract or c.split("@")[0] == contract
                                for c in entry.contracts):
            continue
        if role and role not in entry.roles:
            continue
        rep = reps.get(entry.agent)
        assessed = entry.assessed_quality
        # Until the agent has execution records, the quality shown is its assessed one, and
        # the row says so; stars, rank and the rest need records (docs/reputation.md).
        rows.append(ListingRow(
            agent=entry.agent, owner=entry.owner, roles=entry.roles, contracts=entry.contracts,
            status=entry.status, badge=entry.badge, price=entry.price, capacity=entry.capacity,
            assessed_quality=assessed,
            executions=rep.executions if rep else 0,
            quality=rep.quality if rep else assessed,
            quality_lcb=rep.quality_lcb if rep else None,
            speed_p50=rep.speed_p50 if rep else None,
            cost_per_accepted=rep.cost_per_accepted if rep else None,
            acceptance_rate=rep.acceptance_rate if rep else None,
            stars=rep.stars if rep else None, rank=rep.rank if rep else None,
            trend_30d=rep.trend_30d if rep else None,
            delivered=rep.delivered if rep else 0, accepted=rep.accepted if rep else 0,
            decided=rep.decided if rep else 0,
            quality_basis="executions" if rep else
            "assessment" if assessed is not None else None))
    return rows


def ranking(hub: Hub, contract: str, client: str | None = None) -> list[RankingRow]:
    """Listed agents for a contract, ranked by the routing score, with every input."""
    cid = contract.split("@")[0]
    mans = {a: m for a, m in registry.manifests(hub).items()
            if "specialist" in m.roles and any(c.split("@")[0] == cid for c in m.contracts)}
    load = _open_attempts(hub)
    assessed = registry.assessments(hub)
    candidates = [Candidate(agent=a, owner=m.owner, price=m.price, capacity=m.capacity,
                            open_attempts=load.get(a, 0),
                            listed=bool(assessed.get(a)) and assessed[a][-1].listed)
                  for a, m in sorted(mans.items())]
    owner = registry.actor(hub, client).owner if client else None
    ranked = rank(candidates, _reputations(hub, None), client_owner=owner)
    out: list[RankingRow] = [
        RankedRow(agent=r.agent, score=round(r.score, 2), reputation=r.reputation,
                  price_score=round(r.price_score, 3), load_score=round(r.load_score, 3),
                  inputs=r.inputs) for r in ranked]
    out += [ExcludedRow(agent=a, why=why)
            for a, why in exclusions(candidates, client_owner=owner).items()]
    return out


def pick(hub: Hub, contract: str, client: str, n: int) -> list[str]:
    """The top ``n`` eligible agents for a contest (never the client's own)."""
    if n < 1:
        raise UsageError(f"--contest {n}: must be at least 1")
    eligible = [r.agent for r in ranking(hub, contract, client) if isinstance(r, RankedRow)]
    if len(eligible) < n:
        raise UsageError(f"--contest {n}: only {len(eligible)} listed agent(s) eligible for "
                         f"{contract}; lower N or list more agents (`aismm agent list`)")
    return eligible[:n]
