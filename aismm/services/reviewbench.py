"""The reviewer benchmark: a reviewer is assessed on deliverables whose right verdict is known.

Each contract of the reviewer's manifest gives its cases, from the published contract folder:

- every benchmark task's golden deliverable (``benchmark/<task>/golden/``): known good, the
  right verdict is ``pass``;
- every ``review-benchmark/<case>/``: a ``deliverable/`` answering benchmark task ``task`` and
  an ``expect.yaml`` ``{schema_version: 1, task, verdict: pass|fail, why}`` (mostly known-bad
  ones: no or misplaced findings, a finding on a line that does not exist, a schema that
  rejects the samples, tests that assert nothing or catch no stub).

The reviewer runs on each case exactly as :func:`aismm.services.delivery.review` runs it in a
mission: in the sandbox, on a checkout laid out like the attempt (contract, schemas, the task's
inputs, ``deliverable/``) with the platform's DoD verdict for that deliverable tree in
``verdicts/platform.yaml`` (computed here with :func:`aismm.services.dod.run`, on a separate
copy as the hub does), and ``AISMM_OUTPUT`` naming the one file it may write.

Scoring, per contract: ``100 * right / cases - PASS_PENALTY * known-bad passed`` (at least 0),
where a case is right when the reviewer's verdict is the expected one (a crash, a timeout or a
malformed verdict is wrong). The contract's ``benchmark`` thresholds judge it as they judge
specialists: quality, the p50 of the reviewer's own run time, and the price. A contract without
a known-bad case cannot assess reviewers (goldens alone would list one that passes everything):
its reviewers are rejected.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, TypeGuard

from pydantic import ValidationError

from aismm.core.actor import Manifest
from aismm.core.contract import Contract
from aismm.core.document import CheckResult, Verdict
from aismm.core.errors import ContractError
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.safepath import printable
from aismm.infra import sandbox
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import delivery, dod
from aismm.state import registry

__all__ = ["PASS_PENALTY", "Case", "Outcome", "ReviewResult", "assess", "cases", "is_review",
           "score"]

PASS_PENALTY = 25  # points off a contract's review quality per known-bad deliverable passed
REVIEW_CASES = "review-benchmark/"
Progress = Callable[[str], None]


class ReviewResult(TypedDict):
    """One reviewer-benchmark case of an assessment, as recorded (``kind: review``)."""

    contract: str
    task: str  # the case: <task>-golden, or the review-benchmark folder's name
    kind: Literal["review"]
    expected: str  # pass | fail
    verdict: str  # what the reviewer said: pass | fail | none (no valid verdict)
    dod: str  # the platform DoD on the case's deliverable
    quality: int  # 100 when the verdict is the expected one, else 0
    seconds: float  # the reviewer's run alone
    misses: list[str]
    failed_checks: list[str]


def is_review(task: Mapping[str, object]) -> TypeGuard[ReviewResult]:
    """Whether an assessment's task is a reviewer-benchmark case (else a specialist's task)."""
    return task.get("kind") == "review"


@dataclass(frozen=True)
class Case:
    """A deliverable for benchmark task ``task`` of ``contract`` whose right verdict is known."""

    contract: Contract
    files: Mapping[str, bytes]  # the published contract folder
    name: str
    task: str
    expected: Literal["pass", "fail"]
    deliverable: Mapping[str, bytes]  # paths under deliverable/
    why: str


@dataclass(frozen=True)
class Outcome:
    """A reviewer's benchmark: every case, the quality (mean over contracts), the reasons."""

    results: list[ReviewResult]
    quality: float
    reasons: list[str]


def cases(contract: Contract, files: Mapping[str, bytes]) -> list[Case]:
    """The contract's reviewer-benchmark cases: the goldens, then ``review-benchmark/``."""
    tasks = sorted({p.split("/")[1] for p in files if p.startswith("benchmark/")})
    out = []
    for task in tasks:
        golden = _under(files, f"benchmark/{task}/golden/")
        if golden:
            out.append(Case(contract, files, f"{task}-golden", task, "pass", golden,
                            "the benchmark task's golden deliverable"))
    names = sorted({p.split("/")[1] for p in files if p.startswith(REVIEW_CASES)})
    for name in names:
        where = f"{contract.ref}: {REVIEW_CASES}{name}/expect.yaml"
        raw = files.get(f"{REVIEW_CASES}{name}/expect.yaml")
        try:
            expect = load_yaml(raw, where) if raw is not None else None
        except ValueError as exc:
            raise ContractError(f"{exc}; fix the case") from exc
        if not isinstance(expect, dict) or expect.get("verdict") not in ("pass", "fail") \
                or expect.get("task") not in tasks:
            raise ContractError(f"{where}: needs verdict: pass|fail and task: one of "
                                f"{', '.join(tasks) or '(no benchmark tasks)'}; fix the case")
        deliverable = _under(files, f"{REVIEW_CASES}{name}/deliverable/")
        if not deliverable:
            raise ContractError(f"{where}: the case has no deliverable/ files; add them")
        out.append(Case(contract, files, name, str(expect["task"]),
                        "pass" if expect["verdict"] == "pass" else "fail", deliverable,
                        str(expect.get("why", ""))))
    return out


def _under(files: Mapping[str, bytes], prefix: str) -> dict[str, bytes]:
    return {p[len(prefix):]: d for p, d in files.items() if p.startswith(prefix)}


def score(results: list[ReviewResult]) -> tuple[float, int, int]:
    """(quality, right, known-bad passed) of one contract's cases."""
    right = sum(r["verdict"] == r["expected"] for r in results)
    passed_bad = sum(r["expected"] == "fail" and r["verdict"] == "pass" for r in results)
    if not results:
        return 0.0, 0, 0
    return max(0.0, round(100 * right / len(results) - PASS_PENALTY * passed_bad, 1)), right, \
        passed_bad


def assess(hub: Hub, man: Manifest, progress: Progress | None = None) -> Outcome:
    """Run every case of every contract in the reviewer's manifest; judge each contract."""
    if man.runtime.kind == "git":
        return Outcome([], 0.0, [
            "review: external (git runtime) reviewers are not benchmarked yet; serve the "
            "reviewer with a command or http runtime to be listed"])
    jobs: list[Case] = []
    benches = {}
    for ref in man.contracts:
        contract, files, _sha = registry.resolve_contract(hub, ref)
        benches[contract.ref] = contract.benchmark
        jobs += cases(contract, files)
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - and logging: only here

    workers = max(1, min(4, 2 * (os.cpu_count() or 1)))
    results: list[ReviewResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_case, hub, man, case) for case in jobs]
        for i, future in enumerate(futures, 1):
            results.append(future.result())
            if progress:
                r = results[-1]
                progress(f"[{i}/{len(jobs)}] {man.id} reviews {r['contract']} case {r['task']}: "
                         f"said {r['verdict']}, expected {r['expected']}")
    reasons: list[str] = []
    qualities = []
    for ref, bench in benches.items():
        where = f"{ref}: " if len(benches) > 1 else ""
        mine = [r for r in results if r["contract"] == ref]
        quality, right, passed_bad = score(mine)
        qualities.append(quality)
        p50 = round(statistics.median(r["seconds"] for r in mine), 3) if mine else 0.0
        if not any(r["expected"] == "fail" for r in mine):
            # goldens alone would list a reviewer that passes everything
            reasons.append(f"{where}no known-bad case in the contract's {REVIEW_CASES}; the "
                           "contract cannot assess reviewers (publish a version with cases)")
        elif quality < bench.quality:
            reasons.append(f"{where}review quality {quality} < {bench.quality} ({right} of "
                           f"{len(mine)} verdicts right, {passed_bad} known-bad passed)")
        if p50 > bench.p50_seconds:
            reasons.append(f"{where}p50 {p50}s > {bench.p50_seconds}s")
        if man.price > bench.max_cost:
            reasons.append(f"{where}price {man.price} > max_cost {bench.max_cost}")
    quality = round(statistics.mean(qualities), 1) if qualities else 0.0
    return Outcome(results, quality, reasons)


def _layout(case: Case, dest: Path, actor: str) -> None:
    """A checkout laid out like the attempt: contract, schemas, inputs, README, deliverable."""
    task_inputs = f"benchmark/{case.task}/inputs/"
    for path, data in case.files.items():
        if path == "contract.yaml" or path.startswith("schemas/"):
            target = dest / path
        elif path.startswith(task_inputs):
            target = dest / "inputs" / path[len(task_inputs):]
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for path, data in case.deliverable.items():
        target = dest / "deliverable" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (dest / "README.md").write_text(f"Reviewer assessment case {case.name} of "
                                    f"{case.contract.ref} for {actor}\n")


_DOD: dict[str, list[CheckResult]] = {}  # the DoD of a checkout, by the digest of its files
_DOD_LOCK = threading.Lock()


def _platform_checks(hub: Hub, case: Case, work: Path, actor: str) -> list[CheckResult]:
    """The hub's DoD on the case, run on a copy of the checkout as :func:`delivery.check` does.

    The DoD is deterministic in the checkout's files, so its result is kept per digest of
    them for the process: assessing the next reviewer reuses it instead of running it again.
    """
    copy = work / "dod"
    copy.mkdir()
    _layout(case, copy, actor)
    files = sorted((p.relative_to(copy).as_posix(), p.read_bytes()) for p in copy.rglob("*")
                   if p.is_file() and p.name != "README.md")
    key = hashlib.sha256(b"".join(hashlib.sha256(n.encode()).digest() +
                                  hashlib.sha256(d).digest() for n, d in files)).hexdigest()
    with _DOD_LOCK:
        known = _DOD.get(key)
    if known is not None:
        return known
    schemas = {p: case.files[p] for p in case.contract.schema_paths() if p in case.files}
    checks = [c.model_copy(update={"detail": printable(c.detail, keep="\n\t")})
              for c in dod.run(case.contract, schemas, copy, hidden=(hub.root,))]
    with _DOD_LOCK:
        _DOD[key] = checks
    return checks


def _tree_id(work: Path, deliverable: Mapping[str, bytes]) -> str:
    """The git tree id of the case's ``deliverable/``, as a mission's verdicts name it."""
    return Repo.init_bare(work / "tree.git").build_tree(None, dict(deliverable))


def _run_case(hub: Hub, man: Manifest, case: Case) -> ReviewResult:
    ref = case.contract.ref
    mission_id = f"assess-{case.name}"
    with sandbox.workspace("review-bench-") as work:
        checks = _platform_checks(hub, case, work, man.id)
        tree = _tree_id(work, case.deliverable)
        passed = all(c.status == "pass" for c in checks)
        platform = Verdict(mission=mission_id, reviewer=hub.config.platform, deliverable_tree=tree,
                           verdict="pass" if passed else "fail", score=dod.score(checks),
                           checks=checks, comments="automatic DoD checks")
        checkout = work / "checkout"
        checkout.mkdir()
        _layout(case, checkout, man.id)
        (checkout / "verdicts").mkdir()
        (checkout / "verdicts" / "platform.yaml").write_text(
            dump_yaml(platform.model_dump(mode="json")))
        output = work / "out" / "verdict.yaml"
        output.parent.mkdir()
        env = {"AISMM_ACTOR": man.id, "AISMM_MISSION": mission_id, "AISMM_ROLE": "reviewer",
               "AISMM_CONTRACT": ref, "AISMM_OUTPUT": str(output)}
        started = time.monotonic()
        ok, detail = delivery.run_agent(hub, man, checkout, env, writable=(output.parent,))
        seconds = time.monotonic() - started
        produced = output.read_bytes() if ok and output.is_file() else None
    said, problem = _verdict(mission_id, man.id, tree, produced) if ok else ("none", detail)
    misses = []
    if problem:
        misses.append(printable(problem, limit=300))
    if said != case.expected:
        known = "good" if case.expected == "pass" else "bad"
        misses.append(printable(f"said {said} on a known-{known} deliverable ({case.why})",
                                limit=300))
    return {"contract": ref, "task": case.name, "kind": "review", "expected": case.expected,
            "verdict": said, "dod": "pass" if passed else "fail",
            "quality": 100 if said == case.expected else 0, "seconds": round(seconds, 3),
            "misses": misses, "failed_checks": [c.name for c in checks if c.status != "pass"]}


def _verdict(mission_id: str, rid: str, tree: str, produced: bytes | None) -> tuple[str, str]:
    """(the reviewer's verdict, or ``none``; what is wrong with its output, or "")."""
    if produced is None:
        return "none", "wrote no verdict"
    try:
        data = load_yaml(produced, "verdict")
        if not isinstance(data, dict):
            return "none", "verdict is not a mapping"
        verdict = Verdict(mission=mission_id, reviewer=rid, deliverable_tree=tree,
                          verdict=data.get("verdict"), score=data.get("score"),
                          rubric=data.get("rubric") or {},
                          comments=printable(data.get("comments", ""), keep="\n\t"))
    except (ValueError, TypeError, ValidationError) as exc:
        return "none", f"malformed verdict: {str(exc).splitlines()[0]}"
    if verdict.verdict not in ("pass", "fail"):
        return "none", f"verdict {verdict.verdict} is an arbiter's ruling, not a review"
    return verdict.verdict, ""
