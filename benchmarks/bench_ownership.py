"""Ownership-ladder figures: export against plain git bundles + SQLite backup, verify growth.

``python benchmarks/bench_ownership.py [--quick]``; ``run(quick)`` returns the figures for
run.py. The baseline (``git bundle create --all`` of every repository and SQLite's online
backup of hub.db) is measured in the same process on the same hub.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.services import export, market, mission, registrar  # noqa: E402
from aismm.services import verify as verifier  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _grow(hub: Hub, upto: int) -> None:
    """Missions funded for the external agent ``ext`` until the hub holds ``upto``."""
    for _ in range(upto - len(hub.mission_ids())):
        mission.create(hub, contract_ref="contract.code_review", client="alice",
                       inputs=TASK / "inputs", price=100, tier="T0", agents=["ext"])


def _hub(root: Path) -> Hub:
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root / "hub")
    market.register_reference_agents(hub, assess_them=False)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ext")],
                   check=True)
    registrar.add_actor(hub, "ext", ["specialist"], None, (root / "ext.pub").read_text(), False)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000_000, cause="bench")
    return hub


def _baseline(hub: Hub, out: Path) -> float:
    start = time.perf_counter()
    repos = [hub.registry_path, *(hub.mission_path(m) for m in hub.mission_ids(True))]
    for n, repo in enumerate(repos):
        subprocess.run(["git", "-C", str(repo), "bundle", "create", "--quiet",
                        str(out / f"{n}.bundle"), "--all"], env=ENV, check=True)
    src, dst = sqlite3.connect(hub.db_path), sqlite3.connect(out / "hub.db")
    src.backup(dst)
    src.close()
    dst.close()
    return time.perf_counter() - start


def _verify_rate(hub: Hub, work: Path) -> tuple[float, int]:
    archive = work / f"v{len(hub.mission_ids())}.tar.gz"
    export.export_hub(hub, archive)
    start = time.perf_counter()
    report = verifier.verify(archive)
    took = time.perf_counter() - start
    assert report.ok, report.first_failure()
    sig = next(s for s in report.stages if s.id == "signatures")
    return took, sig.counts["commits"] + sig.counts["tags"]


def run(quick: bool = False) -> dict[str, Any]:
    small, large, sized = (10, 50, 50) if quick else (50, 500, 200)
    with tempfile.TemporaryDirectory(prefix="aismm-bench-own-") as tmp:
        root = Path(tmp)
        hub = _hub(root)
        figures: dict[str, Any] = {"missions_small": small, "missions_large": large,
                                   "missions_export": sized}
        _grow(hub, small)
        took, objects = _verify_rate(hub, root)
        figures.update(verify_small_s=took, verify_small_objects=objects,
                       verify_small_per_s=objects / took)
        _grow(hub, sized)
        (root / "base").mkdir()
        base = min(_baseline(hub, root / "base") for _ in range(2))
        runs = []
        for i in range(2):
            start = time.perf_counter()
            export.export_hub(hub, root / f"e{i}.tar.gz")
            runs.append(time.perf_counter() - start)
        figures.update(export_s=min(runs), baseline_s=base, export_ratio=min(runs) / base)
        _grow(hub, large)
        took, objects = _verify_rate(hub, root)
        figures.update(verify_large_s=took, verify_large_objects=objects,
                       verify_large_per_s=objects / took,
                       verify_growth=(took / figures["verify_small_s"]) / (large / small))
    return figures


if __name__ == "__main__":
    for key, value in run("--quick" in sys.argv).items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
