"""Ledger throughput: settlements (fund + settle) per second: single, batched, naive, and 32
callers through the group writer (FULL durability: each caller returns once its commit is
durable).

Run from the repository root: ``python benchmarks/bench_ledger.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aismm.core.clock import FixedClock
from aismm.infra.ledger import Ledger, transfer_id
from aismm.infra.store import group_commit

PRICE, FEE = 100, 10
CLOCK = "2026-01-01T00:00:00Z"


def _single(db: Path, n: int) -> float:
    """One transaction per fund and one per settle."""
    with Ledger(db, FixedClock(CLOCK)) as ledger:
        ledger.deposit("alice", n * (PRICE + FEE), "bench-deposit")
        start = time.perf_counter()
        for i in range(n):
            ledger.fund(f"s{i}", "alice", PRICE, FEE, f"open-{i}")
            ledger.settle(f"s{i}", "alice", "bob", PRICE, FEE, f"merge-{i}")
        return n / (time.perf_counter() - start)


def _batched(db: Path, n: int, size: int = 1000) -> float:
    """Many fund + settle pairs per transaction, each operation in its own SAVEPOINT."""
    with Ledger(db, FixedClock(CLOCK)) as ledger:
        ledger.deposit("alice", n * (PRICE + FEE), "bench-deposit")
        start = time.perf_counter()
        for first in range(0, n, size):
            with ledger.batch():
                for i in range(first, min(first + size, n)):
                    ledger.fund(f"b{i}", "alice", PRICE, FEE, f"open-{i}")
                    ledger.settle(f"b{i}", "alice", "bob", PRICE, FEE, f"merge-{i}")
        return n / (time.perf_counter() - start)


# The group writer without its two tunings (it takes whatever jobs wait, no lingering for the
# callers it just woke; SQLite's default WAL checkpoint of 1,000 pages): the baseline the
# tuned writer is compared with in one run.
UNTUNED = {"linger": 0, "checkpoint_pages": 1000}


def _fsync_ms(root: Path, rounds: int = 20) -> float:
    """The disk's durable-write latency now: median ms of a 4 KiB append and fdatasync (every
    group commit pays one; it bounds what 32 callers can reach: 16 settlements per commit)."""
    path = root / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return sorted(times)[len(times) // 2] * 1000


def _concurrent(db: Path, n: int, callers: int = 32, group: dict[str, float] | None = None,
                cpu: list[float] | None = None) -> float:
    """``callers`` threads, each with its own connection, settling their share at once; with
    ``group`` (GroupCommit tuning, {} for the defaults), their writes go through one
    group-commit writer (as in ``aismm serve``). ``cpu`` gets the process' CPU seconds per
    settlement (all threads: callers and writer)."""
    if group is not None:
        Ledger(db).close()
        with group_commit(db, **group):
            start = time.process_time()
            rate = _concurrent(db, n, callers)
            if cpu is not None:
                cpu.append((time.process_time() - start) / (n // callers * callers))
            return rate
    with Ledger(db, FixedClock(CLOCK)) as ledger:
        ledger.deposit("alice", n * (PRICE + FEE), "bench-deposit")
    share = max(1, n // callers)

    def work(c: int) -> None:
        with Ledger(db, FixedClock(CLOCK)) as ledger:
            for i in range(c * share, (c + 1) * share):
                ledger.fund(f"c{i}", "alice", PRICE, FEE, f"open-{i}")
                ledger.settle(f"c{i}", "alice", "bob", PRICE, FEE, f"merge-{i}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=callers) as pool:
        list(pool.map(work, range(callers)))
    return callers * share / (time.perf_counter() - start)


def _naive(db: Path, n: int) -> float:
    """Baseline: one SQLite transaction per transfer (5 per settlement), same pragmas."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, debit TEXT, credit TEXT, amount INTEGER)")
    conn.execute("CREATE TABLE b (account TEXT PRIMARY KEY, balance INTEGER NOT NULL)")

    def move(tid: str, debit: str, credit: str, amount: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (tid, debit, credit, amount))
        for account, delta in ((debit, -amount), (credit, amount)):
            conn.execute(
                "INSERT INTO b VALUES (?, ?) ON CONFLICT (account)"
                " DO UPDATE SET balance = balance + excluded.balance", (account, delta))
        conn.execute("COMMIT")

    move(transfer_id(None, "deposit", "naive"), "world", "client:alice", n * (PRICE + FEE))
    start = time.perf_counter()
    for i in range(n):
        m = f"n{i}"
        move(transfer_id(m, "fund", "o", "price"), "client:alice", f"escrow:{m}", PRICE)
        move(transfer_id(m, "fund", "o", "fee"), "client:alice", f"escrow:{m}", FEE)
        move(transfer_id(m, "settle", "s", "price"), f"escrow:{m}", "provider:bob", PRICE)
        move(transfer_id(m, "settle", "s", "fee"), f"escrow:{m}", "platform:fees", FEE)
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def run(quick: bool) -> dict[str, Any]:
    """Measure all modes in fresh databases, rounds interleaved; the best of the rounds, per
    second, and each round's group-commit figures beside its load and fsync latency."""
    n_single, n_batched, rounds = (300, 5000, 1) if quick else (2000, 30000, 3)
    n_grouped = 2000 if quick else 8000
    single = batched = naive = concurrent = 0.0
    singles: list[float] = []
    grouped: list[float] = []
    untuned: list[float] = []
    cpu: list[float] = []
    loads: list[float] = []
    fsyncs: list[float] = []
    for r in range(rounds):  # interleaved, so a burst of load elsewhere hits all modes alike
        with tempfile.TemporaryDirectory(prefix="aismm-bench-") as tmp:
            root = Path(tmp)
            loads.append(os.getloadavg()[0])
            fsyncs.append(_fsync_ms(root))
            singles.append(_single(root / f"single{r}.db", n_single))
            single = max(single, singles[-1])
            batched = max(batched, _batched(root / f"batched{r}.db", n_batched))
            naive = max(naive, _naive(root / f"naive{r}.db", n_single))
            concurrent = max(concurrent, _concurrent(root / f"concurrent{r}.db", n_single))
            untuned.append(_concurrent(root / f"untuned{r}.db", n_grouped, group=UNTUNED))
            grouped.append(_concurrent(root / f"grouped{r}.db", n_grouped, group={}, cpu=cpu))
    return {
        "group_32_runs": [round(g) for g in grouped],
        "group_32_untuned_runs": [round(u) for u in untuned],
        "group_vs_single_runs": [round(g / s, 2) for g, s in zip(grouped, singles, strict=True)],
        "group_32_cpu_us_runs": [round(c * 1e6) for c in cpu],
        "group_vs_untuned": max(grouped) / max(untuned),
        "group_32_untuned_per_s": max(untuned),
        "loads": loads,
        "fsync_ms": [round(f, 2) for f in fsyncs],
        "single_per_s": single,
        "batched_per_s": batched,
        "naive_per_s": naive,
        "concurrent_32_per_s": concurrent,
        "group_32_per_s": max(grouped),
        "group_vs_concurrent": max(grouped) / concurrent,
        "group_vs_single": max(grouped) / single,
        "single_vs_naive": single / naive,
        "batched_vs_naive": batched / naive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    figures = run(parser.parse_args().quick)
    print(f"settlements/s single  (fund+settle, 1 tx per call): {figures['single_per_s']:9.0f}")
    print(f"settlements/s batched (1 tx per 1000, SAVEPOINTs):  {figures['batched_per_s']:9.0f}")
    print(f"settlements/s naive   (1 tx per transfer):          {figures['naive_per_s']:9.0f}")
    print(f"settlements/s, 32 callers, own connections:     {figures['concurrent_32_per_s']:9.0f}")
    print(f"settlements/s, 32 callers, group commit:        {figures['group_32_per_s']:9.0f}"
          f"   runs {figures['group_32_runs']}")
    print(f"settlements/s, 32 callers, untuned group:       "
          f"{figures['group_32_untuned_per_s']:9.0f}   runs {figures['group_32_untuned_runs']}"
          f"   tuned / untuned {figures['group_vs_untuned']:.2f}x")
    print(f"group commit / single caller, each round:   {figures['group_vs_single_runs']}"
          f"   (best: {figures['group_vs_single']:.2f}x)")
    print(f"CPU per settlement, group commit, each round: {figures['group_32_cpu_us_runs']} us")
    print(f"load average (1 min) at each round: {figures['loads']}")
    print(f"fsync latency (4 KiB append, median) at each round: {figures['fsync_ms']} ms")
    print(f"single / naive: {figures['single_vs_naive']:.1f}x   "
          f"batched / naive: {figures['batched_vs_naive']:.1f}x")


if __name__ == "__main__":
    main()
