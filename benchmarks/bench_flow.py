"""Whole-flow figures: push-to-verdict, end-to-end missions/s against plain git, hub growth.

``python benchmarks/bench_flow.py [--quick]``; ``run(quick)`` returns the figures for run.py.
Every AISMM figure is printed next to a plain-git baseline measured in the same process.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.services import lifecycle, market, mission, registrar
from aismm.services.hubs import init_hub

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@x"}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def _hub(root: Path) -> tuple[Hub, Path]:
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root / "hub")
    market.register_reference_agents(hub, assess_them=False)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ext")],
                   check=True)
    registrar.add_actor(hub, "ext", ["specialist"], None, (root / "ext.pub").read_text(), False)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000_000, cause="bench")
    return hub, root / "ext"


def _clone(hub: Hub, mission_id: str, where: Path, key: Path, branch: str) -> Path:
    git("clone", "-q", str(hub.mission_path(mission_id)), str(where), cwd=where.parent)
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("commit.gpgsign", "true")):
        git("config", k, v, cwd=where)
    git("switch", "-q", branch, cwd=where)
    return where


def _deliver(clone: Path) -> None:
    (clone / "deliverable").mkdir(exist_ok=True)
    for f in (TASK / "golden").iterdir():
        shutil.copy(f, clone / "deliverable" / f.name)
    git("add", "deliverable", cwd=clone)
    git("commit", "-q", "-m", "Deliver", cwd=clone)


def _one_mission(hub: Hub, key: Path, work: Path, i: int) -> tuple[float, float]:
    """create → deliver (push) → review (inline) → accept (merge + push) → settle; (push s, total s)."""
    start = time.perf_counter()
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["ext"])
    clone = _clone(hub, created.doc.id, work / f"m{i}", key, "attempts/ext")
    _deliver(clone)
    pushed = time.perf_counter()
    out = git("push", "-q", "origin", "attempts/ext", cwd=clone)
    push_s = time.perf_counter() - pushed
    assert "reviewer ref-reviewer on ext: PASS" in out, out
    git("fetch", "-q", cwd=clone)
    git("switch", "-q", "accepted", cwd=clone)
    git("config", "user.signingkey", str(hub.key_path("alice")), cwd=clone)
    git("merge", "-q", "--no-ff", "-S", "-m", "Accept", "origin/attempts/ext", cwd=clone)
    out = git("push", "-q", "origin", "accepted", cwd=clone)
    assert "escrow settled" in out, out
    return push_s, time.perf_counter() - start


def _baseline(work: Path, n: int) -> float:
    """The same commits and pushes with plain git: no hooks, no signatures checked, no ledger."""
    start = time.perf_counter()
    for i in range(n):
        bare = work / f"plain{i}.git"
        git("init", "-q", "--bare", "-b", "main", str(bare), cwd=work)
        seed = work / f"seed{i}"
        git("init", "-q", "-b", "main", str(seed), cwd=work)
        shutil.copytree(TASK / "inputs", seed / "inputs")
        git("add", ".", cwd=seed)
        git("commit", "-q", "-m", "Open", cwd=seed)
        git("push", "-q", str(bare), "main", "main:attempts/ext", "main:accepted", cwd=seed)
        clone = work / f"pc{i}"
        git("clone", "-q", str(bare), str(clone), cwd=work)
        git("switch", "-q", "attempts/ext", cwd=clone)
        _deliver(clone)
        git("push", "-q", "origin", "attempts/ext", cwd=clone)
        git("switch", "-q", "accepted", cwd=clone)
        git("merge", "-q", "--no-ff", "-m", "Accept", "origin/attempts/ext", cwd=clone)
        git("push", "-q", "origin", "accepted", cwd=clone)
    return time.perf_counter() - start


def _serve(hub: Hub, warm_workers: int | None = None) -> subprocess.Popen[bytes]:
    env = ENV if warm_workers is None else {**ENV, "AISMM_WARM_WORKERS": str(warm_workers)}
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                             "--interval", "60"], stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 20
    seen = b""  # it says "serving" once its socket is up and its warm workers have started
    while b"serving " not in seen and time.monotonic() < deadline and proc.stderr is not None:
        seen += proc.stderr.readline()
    if proc.stderr is not None:  # read (and dropped) to the end, so its log never blocks it
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc


def _growth(root: Path, sizes: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    hub, _key = _hub(root / "growth")
    made = 0
    for size in sizes:
        while made < size:
            mission.create(hub, contract_ref="contract.code_review", client="alice",
                           inputs=TASK / "inputs", price=100, tier="T0", agents=["ext"])
            made += 1
        start = time.perf_counter()
        rows = lifecycle.list_missions(hub)
        out[f"list_{size}_s"] = time.perf_counter() - start
        assert len(rows) == size
        start = time.perf_counter()
        lifecycle.status(hub, rows[-1].id)
        out[f"status_{size}_s"] = time.perf_counter() - start
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 5 if quick else 20
    with tempfile.TemporaryDirectory(prefix="aismm-flow-") as tmp:
        root = Path(tmp)
        hub, key = _hub(root / "a")
        work = root / "work"
        work.mkdir()
        results = [_one_mission(hub, key, work, i) for i in range(n)]
        pushes = sorted(r[0] for r in results)
        total = sum(r[1] for r in results)
        base = _baseline(work, n)
        served: dict[int, list[float]] = {}
        for workers, first in ((0, 2000), (2, 1000)):  # one-shot sandbox runs, then warm ones
            proc = _serve(hub, workers)
            try:
                served[workers] = sorted(_one_mission(hub, key, work, first + i)[0]
                                         for i in range(n))
            finally:
                proc.terminate()
                proc.wait()
        growth = _growth(root, [10, 100] if quick else [10, 100, 1000])
    return {
        "missions": n,
        "push_to_verdict_p50_s": statistics.median(pushes),
        "push_to_verdict_p95_s": pushes[max(0, round(0.95 * len(pushes)) - 1)],
        "push_to_verdict_served_p50_s": statistics.median(served[2]),
        "push_to_verdict_served_oneshot_p50_s": statistics.median(served[0]),
        "e2e_missions_per_s": n / total,
        "baseline_missions_per_s": n / base,
        "e2e_vs_baseline": (total / n) / (base / n),
        **growth,
    }


if __name__ == "__main__":
    figures = run("--quick" in sys.argv)
    for key, value in figures.items():
        print(f"{key:<34} {value:.4f}" if isinstance(value, float) else f"{key:<34} {value}")
