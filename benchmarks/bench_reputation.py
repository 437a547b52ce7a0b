"""Time reputation.compute over many execution records and routing over 1,000 agents.

Usage: ``python benchmarks/bench_reputation.py [--quick]``. Prints figures; never asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aismm.core import reputation, routing

NOW = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.UTC)
AGENTS = 1_000
OWNERS = 300
OUTCOMES = ("accepted", "accepted", "not_selected", "rejected", "failed", "refunded")
CLIENT_OWNER = "actor.owner000"
T = TypeVar("T")
CONTRACTS = ("contract.code_review@1.0.0", "contract.translate@1.0.0")


def make_records(
    count: int, agents: int = AGENTS, seed: int = 20261125
) -> list[reputation.Execution]:
    """``count`` deterministic records over ``agents`` agents and the past year."""
    rng = random.Random(seed)
    owner_of = [f"actor.owner{rng.randrange(OWNERS):03d}" for _ in range(agents)]
    names = [f"agent.a{i:04d}" for i in range(agents)]
    skill = [rng.uniform(40.0, 95.0) for _ in range(agents)]
    records = []
    for i in range(count):
        a = rng.randrange(agents)
        outcome = OUTCOMES[rng.randrange(len(OUTCOMES))]
        delivered = outcome != "failed" and rng.random() > 0.05
        quality = min(100.0, max(0.0, rng.gauss(skill[a], 10.0))) if delivered else None
        records.append(
            reputation.Execution(
                id=f"exec.{i:07d}",
                agent=names[a],
                agent_owner=owner_of[a],
                client=f"actor.client{rng.randrange(500):03d}",
                client_owner=f"actor.owner{rng.randrange(OWNERS):03d}",
                contract=CONTRACTS[rng.randrange(len(CONTRACTS))],
                mission=f"mission.m{i // 4:06d}",
                finished_at=NOW - dt.timedelta(seconds=rng.randrange(365 * 86400)),
                latency_seconds=round(rng.expovariate(1 / 900.0), 3),
                quality=quality,
                outcome=outcome,
                reworks=rng.randrange(3),
                cost=rng.randrange(10, 500) if outcome == "accepted" else 0,
            )
        )
    return records


def make_candidates(agents: int = AGENTS, seed: int = 7) -> list[routing.Candidate]:
    """One candidate per agent with deterministic price, capacity and load."""
    rng = random.Random(seed)
    return [
        routing.Candidate(
            agent=f"agent.a{i:04d}",
            owner=f"actor.owner{rng.randrange(OWNERS):03d}",
            price=rng.randrange(10, 500),
            capacity=(capacity := rng.randrange(1, 10)),
            open_attempts=rng.randrange(capacity + 1),
            listed=rng.random() > 0.05,
        )
        for i in range(agents)
    ]


def _best(
    func: Callable[[], T], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, T]:
    """The fastest of ``repeat`` runs of ``func`` by ``clock`` and its result."""
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        result = func()
        best = min(best, clock() - start)
    return best, result


def run(quick: bool) -> dict[str, float]:
    """Run every measurement; figures ending in ``_s`` are seconds, the rest are counts."""
    count = 100_000 if quick else 1_000_000
    start = time.perf_counter()
    records = make_records(count)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    reps = reputation.compute(records, NOW)
    first = time.perf_counter() - start
    repeat = 3 if quick else 2
    compute_s, reps = _best(lambda: reputation.compute(records, NOW), repeat)
    # CPU time of this process: steadier than wall time when the machine is shared.
    cpu_s, _ = _best(lambda: reputation.compute(records, NOW), repeat, time.process_time)
    contract_s, _ = _best(
        lambda: reputation.compute(records, NOW, contract="contract.code_review@1.0.0"), repeat
    )
    candidates = make_candidates()
    rank_s, ranked = _best(lambda: routing.rank(candidates, reps, client_owner=CLIENT_OWNER), 5)
    list_s, _ = _best(
        lambda: [r.to_dict() for r in sorted(reps.values(), key=lambda r: (-r.rank, r.agent))], 5
    )
    return {
        "records": float(count),
        "agents": float(len(reps)),
        "ranked": float(len(ranked)),
        "generate_s": generate,
        "compute_first_s": first,
        "compute_s": min(first, compute_s),
        "compute_cpu_s": cpu_s,
        "compute_contract_s": contract_s,
        "rank_1000_s": rank_s,
        "list_1000_s": list_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 records instead of 1,000,000")
    figures = run(parser.parse_args().quick)
    for name, value in figures.items():
        shown = f"{value:,.0f}" if not name.endswith("_s") else f"{value * 1000:,.1f} ms"
        print(f"{name:20} {shown}")


if __name__ == "__main__":
    main()
