"""What a process of our own costs to start: CPU of whole `aismm` and hook processes.

``python benchmarks/bench_startup.py [--quick]``; ``run(quick)`` returns the figures for run.py.

Each figure is the user+sys CPU seconds of one whole process (and whatever it waited for),
read from ``wait4``, the minimum of 10 runs (5 with ``--quick``), next to ``python -c pass``
measured the same way in the same run (``*_vs_python``: how many bare interpreter starts one
process costs). CPU time, unlike wall time, barely depends on how loaded the machine is.

- ``tick``: ``aismm --hub H tick`` on a hub with one open mission (nothing due).
- ``accept``: ``aismm --hub H mission accept M --attempt bob``, each run on its own delivered
  mission whose attempt passed the DoD (the merge into ``accepted`` and the settlement included).
- ``pre_receive``: the installed pre-receive hook of a mission, started by hand as git would
  (``GIT_DIR``, the ref line on stdin) for a signed delivery, with the full gate
  (``AISMM_LEAN_HOOK=0``), no server; its objects are already in the repository, its ref never
  moves, so every run judges the same push.
- ``import_worker``: ``python -c "import aismm.services.worker"``.

Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench_gate import ENV, GOLDEN, _hub, _mission  # noqa: E402

from aismm.core.refs import ATTEMPT  # noqa: E402
from aismm.infra.git import Repo  # noqa: E402
from aismm.infra.hub import Hub  # noqa: E402
from aismm.services import worker  # noqa: E402
from aismm.state import registry  # noqa: E402


def cpu_of(argv: list[str], env: dict[str, str], stdin: bytes = b"",
           cwd: Path | None = None) -> float:
    """User+sys CPU seconds of one process (its waited-for children included); it must exit 0."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv[:6])}: exit {proc.returncode}: {err.decode()[-400:]}")
    return usage.ru_utime + usage.ru_stime


def best(n: int, one: Callable[[int], float]) -> float:
    return min(one(i) for i in range(n))


def _deliver(hub: Hub, mission_id: str, main: str) -> tuple[str, str]:
    """A signed delivery by bob on top of ``main``, written into the mission's objects (no ref
    moves): (the commit, its ref)."""
    repo = Repo(hub.mission_path(mission_id))
    tree = repo.build_tree(repo.tree_of(main), {"deliverable/findings.json": GOLDEN})
    new = repo.write_commit(tree=tree, parents=[main], message="Deliver\n",
                            key=hub.hosted_key("bob"), who=registry.identity("bob"),
                            when=hub.clock.now())
    return new, ATTEMPT + "bob"


def run(quick: bool) -> dict[str, float]:
    n = 5 if quick else 10
    # every process runs this tree's package (hooks start in the repository, not here)
    env = {**{k: v for k, v in ENV.items() if not k.startswith("AISMM_")},
           "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "aismm"]
    with tempfile.TemporaryDirectory(prefix="aismm-startup-") as tmp:
        root = Path(tmp)
        hub = _hub(root)  # processing: daemon; alice funded, bob a hosted specialist
        out: dict[str, float] = {}
        pending = _mission(hub)  # the one open mission for tick, a delivery for pre-receive
        new, ref = _deliver(hub, pending.doc.id, pending.main)
        hook = pending.path / "hooks" / "pre-receive"
        old = subprocess.run(["git", "rev-parse", ref], cwd=pending.path, env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        line = f"{old} {new} {ref}\n".encode()
        hook_env = {**env, "GIT_DIR": str(pending.path), "AISMM_PUSHER": "bob",
                    "AISMM_LEAN_HOOK": "0"}
        hub_args = [*cli, "--hub", str(hub.root)]

        out["python_pass_cpu_s"] = best(n, lambda _i: cpu_of([sys.executable, "-c", "pass"],
                                                             env))
        out["import_worker_cpu_s"] = best(n, lambda _i: cpu_of(
            [sys.executable, "-c", "import aismm.services.worker"], env))
        out["tick_cpu_s"] = best(n, lambda _i: cpu_of([*hub_args, "tick"], env))
        # then the missions to accept (tick ran with one open mission): each run accepts its
        # own delivered, assessed attempt
        ready = []
        for _ in range(n):
            created = _mission(hub)
            new, ref = _deliver(hub, created.doc.id, created.main)
            subprocess.run(["git", "push", "-q", ".", f"{new}:{ref}"], cwd=created.path,
                           env={**env, "AISMM_PUSHER": "bob"}, check=True, capture_output=True)
            ready.append(created.doc.id)
        # pushed through the hooks (processing: daemon): the DoD runs here, for all of them
        worker.process(hub)
        out["pre_receive_cpu_s"] = best(n, lambda _i: cpu_of([str(hook)], hook_env, line,
                                                             cwd=pending.path))
        out["accept_cpu_s"] = best(n, lambda i: cpu_of(
            [*hub_args, "mission", "accept", ready[i], "--attempt", "bob"], env))
        base = out["python_pass_cpu_s"]
        for key in ("import_worker", "tick", "pre_receive", "accept"):
            out[f"{key}_vs_python"] = out[f"{key}_cpu_s"] / base
        out["load"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    for name, value in run("--quick" in sys.argv).items():
        print(f"{name:<24} {value:.4f}")
