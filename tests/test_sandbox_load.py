"""Checks are deterministic under load: many sandboxed runs at once each get their own process
budget (a uid or user namespace of their own), so none fails because the others are running.

The old sandbox gave every run uid 65534: RLIMIT_NPROC counted all of them together, and under
load a known-good deliverable's check could fail to start (`Resource temporarily unavailable`).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aismm.infra import sandbox

RUNS = 24


def _one(i: int) -> sandbox.Result:
    with tempfile.TemporaryDirectory() as work:
        # each run starts a few processes of its own, inside a small budget
        script = "for n in 1 2 3 4; do sleep 0.2 & done; wait; echo ok"
        return sandbox.run(["/bin/sh", "-c", script], Path(work),
                           limits=sandbox.Limits(processes=8, timeout_seconds=60))


def test_concurrent_runs_never_share_a_process_budget() -> None:
    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        results = list(pool.map(_one, range(RUNS)))
    failures = [r.stderr for r in results if not (r.ok and r.stdout == "ok\n")]
    assert failures == []
