"""Benchmark scoring, run where agent output belongs: inside the sandbox.

Scoring parses, validates and (for unit tests) runs what an agent delivered, so the hub lays out
the task and the deliverable in a workspace and runs ``python -m aismm.checks.expect`` there.
A run that fails, or prints anything but the score, scores 0 with the reason.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from aismm.infra import sandbox

__all__ = ["evaluate"]

_LIMITS = sandbox.Limits(timeout_seconds=180, cpu_seconds=180)


def evaluate(contract_id: str, task_dir: Path, deliverable_dir: Path,
             hidden: Sequence[Path] = ()) -> tuple[int, list[str]]:
    """Score ``deliverable_dir`` against ``task_dir/expect.yaml`` in the sandbox (``hidden``:
    paths to cover should they lie in its view, e.g. the hub)."""
    with sandbox.workspace("score-") as work:
        shutil.copytree(task_dir, work / "task", symlinks=True)
        # links stay links: followed here, they would copy what the hub may read into the run
        shutil.copytree(deliverable_dir, work / "deliverable", symlinks=True)
        done = sandbox.run([sandbox.PYTHON, "-m", "aismm.checks.expect", contract_id, "task",
                            "deliverable"], work, limits=_LIMITS, hidden_paths=hidden)
    if not done.ok:
        why = "timed out" if done.timed_out else f"exit {done.returncode}"
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return 0, [f"scoring failed ({why}{': ' + tail[0][:200] if tail else ''})"]
    try:
        data = json.loads(done.stdout)
        score, details = int(data["score"]), [str(d) for d in data["details"]]
    except (ValueError, KeyError, TypeError):
        return 0, ["scoring failed (its output is not a score)"]
    return max(0, min(100, score)), details
