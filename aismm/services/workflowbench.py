"""The orchestrator benchmark: an orchestrator is assessed on real workflow runs.

For each benchmark task of the workflow contracts an orchestrator serves, a ``bench-`` parent
mission at T0, funded by the platform (a deposit to ``client:<platform>``), runs with the listed
agents to the end; quality is the share of steps accepted when the assembled report passes the
DoD. The parent is then cancelled (its children stay paid). See docs/protocol.md, "Workflows".
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aismm.core.errors import MissionError
from aismm.core.model import dump_yaml
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import lifecycle, market, mission, orchestration, registrar, settlement
from aismm.state import registry

__all__ = ["assess", "is_orchestrator"]


def is_orchestrator(hub: Hub, agent: str) -> bool:
    """Whether an agent's manifest makes it an orchestrator of workflow contracts only."""
    man = registry.manifests(hub).get(agent)
    return man is not None and "orchestrator" in man.roles and "specialist" not in man.roles


def assess(hub: Hub, agent: str, process: Callable[[Hub], list[str]],
           progress: market.Progress | None = None, max_passes: int = 50) -> market.Assessment:
    """Assess an orchestrator on its workflow contracts' benchmark tasks: each task is a real
    workflow run (a ``bench-`` parent the platform funds, child missions with the listed agents,
    processed to the end); quality is the share of steps accepted when the assembled report
    passes the DoD. The parent is refunded afterwards; the children stay paid (docs/protocol.md,
    "Workflows"). ``process`` drains the outbox (the worker's, passed in: it sits above)."""
    man = registry.manifests(hub).get(agent)
    if man is None:
        raise MissionError(f"{agent}: no manifest; publish one with `aismm agent register`")
    platform = hub.config.platform
    results: list[market.TaskResult] = []
    reasons: list[str] = []
    for ref in man.contracts:
        contract, files, _sha = registry.resolve_contract(hub, ref)
        tasks = sorted({p.split("/")[1] for p in files if p.startswith("benchmark/")})
        for task in tasks:
            results.append(_bench_run(hub, agent, contract.ref, files, task, process,
                                      max_passes))
            if progress:
                r = results[-1]
                progress(f"{agent} on {r['contract']} task {task}: DoD {r['dod']}, quality "
                         f"{r['quality']}")
        mine = [r for r in results if r["contract"] == contract.ref]
        quality = round(sum(r["quality"] for r in mine) / len(mine), 1) if mine else 0.0
        seconds = sorted(r["seconds"] for r in mine)
        p50 = seconds[len(seconds) // 2] if seconds else 0.0
        where = f"{contract.ref}: " if len(man.contracts) > 1 else ""
        if quality < contract.benchmark.quality:
            reasons.append(f"{where}quality {quality} < {contract.benchmark.quality}")
        if p50 > contract.benchmark.p50_seconds:
            reasons.append(f"{where}p50 {p50}s > {contract.benchmark.p50_seconds}s")
        if man.price > contract.benchmark.max_cost:
            reasons.append(f"{where}price {man.price} > max_cost {contract.benchmark.max_cost}")
    if any(r["dod"] != "pass" for r in results):
        reasons.append("DoD failed on " + ", ".join(r["task"] for r in results
                                                     if r["dod"] != "pass"))
    quality = round(sum(r["quality"] for r in results) / len(results), 1) if results else 0.0
    durations = sorted(r["seconds"] for r in results)
    previous = registry.assessments(hub).get(agent, [])
    record: market.Assessment = {
        "schema_version": 1, "agent": agent, "n": len(previous) + 1,
        "status": "listed" if not reasons and results else "rejected",
        "badge": ("gold" if quality >= 90 else "silver" if quality >= 80 else "bronze")
        if not reasons and results else None, "quality": quality,
        "p50_seconds": durations[len(durations) // 2] if durations else 0.0,
        "cost": man.price, "reasons": reasons or ([] if results else ["no benchmark task"]),
        "tasks": [*results], "at": hub.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}
    registrar.commit_files(hub, {f"assessments/{agent}/{record['n']:04d}.yaml":
                                 dump_yaml(record).encode()},
                           f"Assess {agent}: {record['status']}\n", platform)
    return record


def _bench_run(hub: Hub, agent: str, ref: str, files: dict[str, bytes], task: str,
               process: Callable[[Hub], list[str]], max_passes: int) -> market.TaskResult:
    """One benchmark task as a real workflow run, closed afterwards."""
    platform = hub.config.platform
    contract = registry.resolve_contract(hub, ref)[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aismm-bench-") as tmp:
        prefix = f"benchmark/{task}/inputs/"
        for path, data in files.items():
            if path.startswith(prefix):
                out = Path(tmp) / path[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
        # enough for every step at its max price, within the contract's range
        price = min(contract.pricing.max, max(contract.pricing.min, registry.manifests(hub)[
            agent].price, sum(s.max_price for s in contract.steps)))
        created = mission.create(hub, contract_ref=ref, client=platform, inputs=Path(tmp),
                                 price=price, tier="T0", agents=[agent], benchmark=True)
    doc = created.doc
    cause = f"assess:{doc.id}"
    with Ledger(hub.db_path, hub.clock) as ledger:  # the platform pays for its benchmark runs
        short = doc.price + doc.fee - ledger.balance(f"client:{platform}")
        if short > 0:
            ledger.deposit(platform, short, cause=cause)
        ledger.fund(doc.id, platform, doc.price, doc.fee, cause=cause)
    orchestration.start(hub, doc.id)
    for _ in range(max_passes):
        if not process(hub):
            break
    st = lifecycle.status(hub, doc.id)
    seconds = round(time.monotonic() - started, 3)
    plan = orchestration.plan_of(hub, doc.id)
    attempt = next((a for a in st["attempts"] if a["agent"] == agent), None)
    dod = (attempt["dod"] or "none") if attempt else "none"
    accepted = sum(1 for s in plan.steps.values() if s.accepted is not None)
    quality = round(100 * accepted / len(plan.steps)) if dod == "pass" and plan.steps else 0
    misses = [f"step {sid}: not accepted" for sid, s in plan.steps.items() if s.accepted is None]
    if st["state"] not in ("refunded", "settled"):
        settlement.refund(hub, doc.id, "cancel")
    return {"contract": ref, "task": task, "dod": dod, "quality": quality,
            "mission": doc.id, "seconds": seconds, "misses": misses,
            "failed_checks": [c["name"] for v in (attempt["verdicts"].values() if attempt
                                                  else []) for c in v["checks"]
                              if c["status"] != "pass"]}
