"""Whole-flow figures: push-to-verdict, end-to-end missions/s against plain git, hub growth.

``python benchmarks/bench_flow.py [--quick]``; ``run(quick)`` returns the figures for run.py.
Every AISMM figure is printed next to a plain-git baseline measured in the same process.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.core.model import dump_yaml  # noqa: E402
from aismm.core.refs import ATTEMPT, SETTLED  # noqa: E402
from aismm.infra.git import Repo, read_refs  # noqa: E402
from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.services import lifecycle, market, mission, registrar, worker  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@x"}
POLL = 0.002  # seconds between two looks at a served mission's refs (verdict, settled tag)
REVIEWERS = ("platform", "ref-reviewer")  # the verdicts a code_review T0 delivery gets


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
    """One `git clone`: the branch checked out and the signing settings written by `-c`."""
    git("clone", "-q", "-b", branch.removeprefix("refs/heads/"), "-c", "gpg.format=ssh",
        "-c", f"user.signingkey={key}", "-c", "commit.gpgsign=true",
        str(hub.mission_path(mission_id)), str(where), cwd=where.parent)
    return where


def _deliver(clone: Path) -> None:
    (clone / "deliverable").mkdir(exist_ok=True)
    for f in (TASK / "golden").iterdir():
        shutil.copy(f, clone / "deliverable" / f.name)
    git("add", "deliverable", cwd=clone)
    git("commit", "-q", "-m", "Deliver", cwd=clone)


def _await(what: str, ready: Callable[[], bool], poll: float, clock: Callable[[], float],
           timeout: float = 120.0) -> None:
    """Poll ``ready`` every ``poll`` seconds until it holds; ``timeout`` only guards a hub that
    never answers (it raises, it is not a wait the figure relies on)."""
    deadline = clock() + timeout
    while not ready():
        if clock() > deadline:
            raise RuntimeError(f"{what}: not there after {timeout:.0f} s")
        time.sleep(poll)


def _verdicts_on(path: Path, branch: str, reviewers: tuple[str, ...]) -> Callable[[], bool]:
    """Whether the attempt's tip carries a passing verdict of each reviewer for its own
    deliverable tree: each poll reads the refs from their files; a tip is read (pygit2) once."""
    judged: dict[str, bool] = {}

    def ready() -> bool:
        tip = (read_refs(path) or {}).get(branch)
        if tip is None:
            return False
        if tip not in judged:
            repo = Repo(path)
            tree = repo.subtree_id(tip, "deliverable")
            texts = [repo.read(tip, f"verdicts/{r}.yaml") or b"" for r in reviewers]
            judged[tip] = all(f"deliverable_tree: {tree}".encode() in text
                              and b"verdict: pass" in text for text in texts)
        return judged[tip]

    return ready


def _one_mission(hub: Hub, key: Path, work: Path, i: int, served: bool = False,
                 poll: float = POLL) -> tuple[float, float]:
    """create → clone → deliver → push → verdict → merge into accepted → push → settled;
    (push-to-verdict s, total s).

    Without serve the pushes return once their events are handled, so the verdict and the
    settlement are in their output. ``served``: the verdict and the ``settled`` tag are waited
    for by polling the mission's refs every ``poll`` seconds (whatever the processing mode)."""
    clock = time.perf_counter
    start = clock()
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["ext"])
    if hub.config.processing == "inline":  # as `mission create` and the API do: the new
        worker.process(hub)  # mission's events now (daemon: serve handles them)
    path = hub.mission_path(created.doc.id)
    clone = _clone(hub, created.doc.id, work / f"m{i}", key, "attempts/ext")
    _deliver(clone)
    pushed = clock()
    out = git("push", "-q", "origin", "attempts/ext", cwd=clone)
    if served:
        _await("verdict", _verdicts_on(path, f"{ATTEMPT}ext", REVIEWERS), poll, clock)
    else:
        assert "reviewer ref-reviewer on ext: PASS" in out, out
    push_s = clock() - pushed
    git("fetch", "-q", cwd=clone)
    git("switch", "-q", "accepted", cwd=clone)
    git("-c", f"user.signingkey={hub.key_path('alice')}", "merge", "-q", "--no-ff", "-S",
        "-m", "Accept", "origin/attempts/ext", cwd=clone)
    out = git("push", "-q", "origin", "accepted", cwd=clone)
    if served:
        _await("settled", lambda: SETTLED in (read_refs(path) or {}), poll, clock)
    else:
        assert "escrow settled" in out, out
    return push_s, clock() - start


def _plain_mission(work: Path, i: int) -> float:
    """The same commits and pushes with plain git: no hooks, no signatures checked, no ledger,
    no review; the clone takes the same one command. Seconds."""
    start = time.perf_counter()
    bare = work / f"plain{i}.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=work)
    seed = work / f"seed{i}"
    git("init", "-q", "-b", "main", str(seed), cwd=work)
    shutil.copytree(TASK / "inputs", seed / "inputs")
    git("add", ".", cwd=seed)
    git("commit", "-q", "-m", "Open", cwd=seed)
    git("push", "-q", str(bare), "main", "main:attempts/ext", "main:accepted", cwd=seed)
    clone = work / f"pc{i}"
    git("clone", "-q", "-b", "attempts/ext", str(bare), str(clone), cwd=work)
    _deliver(clone)
    git("push", "-q", "origin", "attempts/ext", cwd=clone)
    git("switch", "-q", "accepted", cwd=clone)
    git("merge", "-q", "--no-ff", "-m", "Accept", "origin/attempts/ext", cwd=clone)
    git("push", "-q", "origin", "accepted", cwd=clone)
    return time.perf_counter() - start


def _baseline(work: Path, n: int, first: int = 0) -> float:
    """``n`` plain-git missions back to back; seconds."""
    return sum(_plain_mission(work, first + i) for i in range(n))


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


def _processing(hub: Hub, mode: str) -> Hub:
    """The hub with ``processing: <mode>`` in hub.yaml (read afresh by serve and the hooks)."""
    config = hub.config.model_copy(update={"processing": mode})
    (hub.root / "hub.yaml").write_text(dump_yaml(config.model_dump(mode="json")))
    return Hub(hub.root, hub.clock)


def _tree_cpu(pid: int) -> float:
    """CPU seconds used by process ``pid`` and its descendants, live or reaped (Linux /proc):
    user + system of each live process, plus what each has collected from reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # gone meanwhile: its time is in its parent's cutime/cstime
    return total


def _cpu(serve: subprocess.Popen[bytes] | None = None) -> float:
    """CPU seconds so far of this process, its reaped children (git, ssh-keygen, the hooks)
    and, given, the `aismm serve` process tree (its threads, warm workers and their runs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return total + (_tree_cpu(serve.pid) if serve is not None else 0.0)


def _served(hub: Hub, key: Path, work: Path, n: int, first: int, workers: int
            ) -> dict[str, float]:
    """``n`` missions through `aismm serve`, each paired with a plain-git mission run just
    before it (so both see the same load); one untimed warm-up pair first. Wall time and CPU
    time (everything each side ran, the server included) are both summed per side."""
    proc = _serve(hub, workers)
    try:
        _plain_mission(work, first)
        _one_mission(hub, key, work, first, served=True)
        pushes, totals, plain = [], [], []
        cpu, plain_cpu = 0.0, 0.0
        for i in range(first + 1, first + 1 + n):
            before = _cpu(proc)
            plain.append(_plain_mission(work, i))
            middle = _cpu(proc)
            push_s, total_s = _one_mission(hub, key, work, i, served=True)
            after = _cpu(proc)
            plain_cpu += middle - before
            cpu += after - middle
            pushes.append(push_s)
            totals.append(total_s)
    finally:
        proc.terminate()
        proc.wait()
    return {"push_p50_s": statistics.median(pushes), "missions_per_s": n / sum(totals),
            "baseline_missions_per_s": n / sum(plain), "vs_baseline": sum(totals) / sum(plain),
            "pair_ratio_p50": statistics.median(
                [t / b for t, b in zip(totals, plain, strict=True)]),
            "cpu_per_mission_s": cpu / n, "baseline_cpu_per_mission_s": plain_cpu / n,
            "cpu_vs_baseline": cpu / plain_cpu if plain_cpu else float("nan")}


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
        # Without serve: every push judges, reviews in a one-shot sandbox and settles in its
        # own hook processes.
        results = [_one_mission(hub, key, work, i) for i in range(n)]
        pushes = sorted(r[0] for r in results)
        total = sum(r[1] for r in results)
        base = _baseline(work, n)
        # Through `aismm serve` (how a hub runs in production): one-shot sandbox runs, warm
        # workers, and warm workers with `processing: daemon` (pushes return at once).
        oneshot = _served(hub, key, work, n, 2000, 0)
        warm = _served(hub, key, work, n, 1000, 2)
        daemon = _served(_processing(hub, "daemon"), key, work, n, 3000, 2)
        growth = _growth(root, [10, 100] if quick else [10, 100, 1000])
    return {
        "missions": n,
        "push_to_verdict_p50_s": statistics.median(pushes),
        "push_to_verdict_p95_s": pushes[max(0, round(0.95 * len(pushes)) - 1)],
        "push_to_verdict_served_p50_s": warm["push_p50_s"],
        "push_to_verdict_served_oneshot_p50_s": oneshot["push_p50_s"],
        "push_to_verdict_served_daemon_p50_s": daemon["push_p50_s"],
        "e2e_missions_per_s": n / total,
        "baseline_missions_per_s": n / base,
        "e2e_vs_baseline": total / base,
        "e2e_served_missions_per_s": warm["missions_per_s"],
        "e2e_served_baseline_missions_per_s": warm["baseline_missions_per_s"],
        "e2e_served_vs_baseline": warm["vs_baseline"],
        "e2e_served_pair_ratio_p50": warm["pair_ratio_p50"],
        "e2e_served_cpu_per_mission_s": warm["cpu_per_mission_s"],
        "e2e_served_baseline_cpu_per_mission_s": warm["baseline_cpu_per_mission_s"],
        "e2e_served_cpu_vs_baseline": warm["cpu_vs_baseline"],
        "e2e_served_oneshot_vs_baseline": oneshot["vs_baseline"],
        "e2e_served_oneshot_cpu_vs_baseline": oneshot["cpu_vs_baseline"],
        "e2e_served_daemon_cpu_vs_baseline": daemon["cpu_vs_baseline"],
        "e2e_served_daemon_missions_per_s": daemon["missions_per_s"],
        "e2e_served_daemon_vs_baseline": daemon["vs_baseline"],
        "load_average_1min": os.getloadavg()[0],
        **growth,
    }


if __name__ == "__main__":
    figures = run("--quick" in sys.argv)
    for key, value in figures.items():
        print(f"{key:<34} {value:.4f}" if isinstance(value, float) else f"{key:<34} {value}")
