"""What the gate costs: a push with the hooks against the same push without, and the validator.

``python benchmarks/bench_gate.py [--quick]``; ``run(quick)`` returns the figures for run.py.

(a) ``git push`` of a one-file change under ``deliverable/`` to a mission repository with its
    installed hooks, and the same commit pushed to an identical copy of that repository without
    hooks, interleaved in the same run; medians of 20 pushes each (5 with ``--quick``). The hub
    runs with ``processing: daemon`` so post-receive only queues the event: the figure is the
    gate (pre-receive) plus the outbox write, not the DoD assessment (bench_flow measures that).
    Rounds alternate the lean pre-receive (the default: ``ratio``) and the full gate
    (``AISMM_LEAN_HOOK=0``: ``ratio_full_gate``), each against its own plain push; the same
    comparison in CPU seconds of everything a push ran (``cpu_ratio``, ``cpu_ratio_full_gate``)
    barely depends on how loaded the machine is.
    The same pushes are then answered by a resident ``aismm serve`` (warm imports); it assesses
    each delivery in the background, and every timed push waits until that is done.
(b) ``gate.judge`` in-process for one push delivering 10, 100 and 1,000 files (a contract that
    allows ``deliverable/**`` is published for it); median of several runs.

Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm import gate
from aismm.core.model import dump_yaml, load_yaml
from aismm.infra.git import Repo
from aismm.infra.hub import Hub, HubConfig
from aismm.infra.ledger import Ledger
from aismm.services import judged, mission, registrar
from aismm.services.hubs import init_hub
from aismm.state import registry

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
GOLDEN = (TASK / "golden" / "findings.json").read_bytes()
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
       "GIT_AUTHOR_NAME": "bob", "GIT_AUTHOR_EMAIL": "bob@example.invalid",
       "GIT_COMMITTER_NAME": "bob", "GIT_COMMITTER_EMAIL": "bob@example.invalid"}
for _key in ("AISMM_PUSHER", "REMOTE_USER", "AISMM_NOW", "GIT_DIR"):
    ENV.pop(_key, None)
BULK = "contract.bench_bulk"


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def _hub(root: Path) -> Hub:
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root / "hub", config=HubConfig(processing="daemon"))
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    registrar.add_actor(hub, "bob", ["specialist"], "acme", None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1_000_000, cause="bench")
    _publish_bulk_contract(hub)
    return hub


def _publish_bulk_contract(hub: Hub) -> None:
    """code_review's terms, but any file under deliverable/ and up to 5,000 of them."""
    source = ROOT / "contracts" / "code_review"
    doc = load_yaml((source / "contract.yaml").read_text(), "contract.yaml")
    doc["id"], doc["title"] = BULK, "Bulk delivery (benchmark only)"
    doc["deliverable"]["allowed"] = ["deliverable/**"]
    doc["deliverable"]["limits"] = {"max_file_bytes": 1 << 20, "max_files": 5000,
                                    "max_total_bytes": 64 << 20}
    base = f"contracts/{BULK}/{doc['version']}"
    files: dict[str, bytes | None] = {f"{base}/contract.yaml": dump_yaml(doc).encode()}
    for schema in (source / "schemas").iterdir():
        files[f"{base}/schemas/{schema.name}"] = schema.read_bytes()
    registrar.commit_files(hub, files, "Publish the bulk benchmark contract\n",
                          hub.config.platform)


def _mission(hub: Hub, contract: str = "contract.code_review") -> mission.Created:
    return mission.create(hub, contract_ref=contract, client="alice", inputs=TASK / "inputs",
                          price=100, tier="T0", agents=["bob"])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU: dict[str, list[float]] = {}  # CPU seconds of each timed push (git and its hooks), by kind


def _timed_push(clone: Path, remote: str, kind: str = "", **env: str) -> float:
    """Wall seconds of one push; its CPU seconds (git, receive-pack and the hooks: every
    process it waited for) are kept under ``kind`` (a figure the machine's load barely moves)."""
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(["git", "push", "-q", remote, "attempts/bob"], cwd=clone,
                          env={**ENV, **env}, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if kind:
        CPU.setdefault(kind, []).append(_children_cpu() - cpu)
    if done.returncode:
        raise RuntimeError(f"git push {remote}: {done.stderr.strip()}")
    return elapsed


def _serve(hub: Hub) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                             "--interval", "60"], stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 20
    while not (hub.root / "run" / "aismm.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def push_overhead(root: Path, n: int) -> dict[str, float]:
    """Median push time with the hooks, without, and with the hooks answered by `aismm serve`."""
    hub = _hub(root)
    created = _mission(hub)
    plain = root / "plain.git"
    shutil.copytree(created.path, plain, symlinks=True)
    for hook in (plain / "hooks").iterdir():
        hook.unlink()
    clone = root / "clone"
    git("clone", "-q", str(created.path), str(clone), cwd=root)
    git("remote", "add", "plain", str(plain), cwd=clone)
    for key, value in (("gpg.format", "ssh"), ("user.signingkey", str(hub.key_path("bob"))),
                       ("commit.gpgsign", "true")):
        git("config", key, value, cwd=clone)
    git("switch", "-q", "attempts/bob", cwd=clone)
    (clone / "deliverable").mkdir()

    def one_round(i: int, lean: bool = True) -> tuple[float, float]:
        (clone / "deliverable" / "findings.json").write_bytes(GOLDEN.rstrip() + b"\n" * (i + 1))
        git("add", "deliverable", cwd=clone)
        git("commit", "-q", "-m", f"Deliver {i}", cwd=clone)
        hooked = _timed_push(clone, "origin", "lean" if lean else "full",
                             **({} if lean else {"AISMM_LEAN_HOOK": "0"}))
        return hooked, _timed_push(clone, "plain", "plain" if i else "")

    one_round(0)  # warm the page cache and git's first-run costs on both sides
    # lean pre-receive (the default) and the full gate (AISMM_LEAN_HOOK=0), interleaved
    rounds = [one_round(i, lean=i % 2 == 1) for i in range(1, 2 * n + 1)]
    lean, full = rounds[0::2], rounds[1::2]
    hooked = statistics.median(r[0] for r in lean)
    bare = statistics.median(r[1] for r in lean)
    out = {"hook_push_median_s": hooked, "plain_push_median_s": bare, "ratio": hooked / bare,
           "full_gate_push_median_s": statistics.median(r[0] for r in full),
           "ratio_full_gate": statistics.median(r[0] for r in full)
           / statistics.median(r[1] for r in full)}
    cpu = {kind: statistics.median(values) for kind, values in CPU.items()}
    CPU.clear()
    out.update({"hook_push_cpu_s": cpu["lean"], "full_gate_push_cpu_s": cpu["full"],
                "plain_push_cpu_s": cpu["plain"], "cpu_ratio": cpu["lean"] / cpu["plain"],
                "cpu_ratio_full_gate": cpu["full"] / cpu["plain"]})
    def judged() -> None:
        """Wait until the server has written the platform verdict on the pushed delivery, then
        build on it (both remotes at the same tip), so no assessment runs during a timed push."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            git("fetch", "-q", "origin", cwd=clone)
            tip = "origin/attempts/bob"
            tree = git("rev-parse", f"{tip}:deliverable", cwd=clone).strip()
            shown = subprocess.run(["git", "show", f"{tip}:verdicts/platform.yaml"], cwd=clone,
                                   env=ENV, capture_output=True, text=True, check=False).stdout
            if f"deliverable_tree: {tree}" in shown:
                git("reset", "-q", "--hard", tip, cwd=clone)
                git("push", "-q", "--force", "plain", f"{tip}:refs/heads/attempts/bob", cwd=clone)
                return
            time.sleep(0.1)
        raise RuntimeError("aismm serve did not assess the delivery within 120 s")

    def served_round(i: int) -> tuple[float, float]:
        judged()
        return one_round(i)

    proc = _serve(hub)
    try:
        if (hub.root / "run" / "aismm.sock").exists():
            served = [served_round(i) for i in range(2 * n + 1, 3 * n + 1)]
            out["served_push_median_s"] = statistics.median(r[0] for r in served)
            out["served_plain_median_s"] = statistics.median(r[1] for r in served)
            out["served_ratio"] = out["served_push_median_s"] / out["served_plain_median_s"]
    finally:
        proc.terminate()
        proc.wait()
    return out


def judge_times(root: Path, sizes: list[int], repeats: int) -> dict[str, float]:
    """Median in-process `gate.judge` time for one push delivering N files."""
    hub = _hub(root)
    out: dict[str, float] = {}
    key = hub.hosted_key("bob")
    for size in sizes:
        created = _mission(hub, BULK)
        repo = Repo(created.path)
        files: dict[str, bytes | None] = {"deliverable/findings.json": GOLDEN}
        for i in range(size - 1):
            files[f"deliverable/part-{i // 50:03d}/note-{i:05d}.md"] = f"note {i}\n".encode()
        tree = repo.build_tree(repo.tree_of(created.main), files)
        new = repo.write_commit(tree=tree, parents=[created.main], message="Deliver\n", key=key,
                                who=registry.identity("bob"), when=hub.clock.now())
        update: list[gate.Update] = [(created.main, new, "refs/heads/attempts/bob")]
        judged.judge(hub, repo, update)  # accepted (raises otherwise); also warms caches
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            judged.judge(hub, repo, update)
            runs.append(time.perf_counter() - start)
        out[f"judge_{size}_files_s"] = statistics.median(runs)
    return out


def run(quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="aismm-gate-") as tmp:
        root = Path(tmp)
        figures = push_overhead(root / "push", 5 if quick else 20)
        figures.update(judge_times(root / "judge", [10, 100, 1000], 3 if quick else 7))
    return figures


if __name__ == "__main__":
    for name, value in run("--quick" in sys.argv).items():
        print(f"{name:<24} {value:.4f}")
