"""The HTTP face: a push through ``git http-backend`` with the gate, against the same push to a
hook-less copy of the repository behind the same server; the marketplace page and the agent-list
API with 1,000 listed agents, timed from this process against ``aismm serve --http`` in another.

``python benchmarks/bench_http.py [--quick]``; ``run(quick)`` returns the figures for run.py.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.core.actor import Actor  # noqa: E402
from aismm.core.model import dump_yaml, load_yaml  # noqa: E402
from aismm.core.signing import generate_key  # noqa: E402
from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.infra.store import Store  # noqa: E402
from aismm.services import events, mission, registrar, tokens  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@x", "GIT_TERMINAL_PROMPT": "0"}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def _serve(hub: Hub) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                             "--interval", "60", "--http", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stderr is not None
    for _ in range(100):
        line = proc.stderr.readline()
        if line.startswith("http: listening on "):
            return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError("aismm serve --http did not start")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(60)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def _push_hub(root: Path) -> tuple[Hub, Path]:
    hub = init_hub(root / "hub")
    config = hub.root / "hub.yaml"
    data = load_yaml(config.read_text(), str(config)) or {}
    data["processing"] = "daemon"  # the push measures the gate; the DoD runs after it
    config.write_text(dump_yaml(data))
    hub = Hub(hub.root)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ext")],
                   check=True)
    registrar.add_actor(hub, "ext", ["specialist"], None, (root / "ext.pub").read_text(), False)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000_000, cause="bench")
    return hub, root / "ext"


def _idle(hub: Hub) -> None:
    """Until the server's loop has drained the outbox (bounded), so rounds do not overlap."""
    for _ in range(600):
        with Store(hub.db_path) as store:
            if store.pending() == 0:
                return
        time.sleep(0.1)


def _pushes(root: Path, rounds: int) -> dict[str, float]:
    hub, key = _push_hub(root)
    token = str(tokens.create(hub, "ext")["token"])
    helper = f"!f() {{ echo username=ext; echo password={token}; }}; f"
    auth = ["-c", f"credential.helper={helper}"]
    proc, url = _serve(hub)
    gated: list[float] = []
    plain: list[float] = []
    try:
        for i in range(rounds):
            _idle(hub)
            created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                                     inputs=TASK / "inputs", price=100, tier="T0",
                                     agents=["ext"])
            mid = created.doc.id
            raw = f"{mid}-raw"  # a hook-less copy, its refs logged as the hub's own
            shutil.copytree(hub.mission_path(mid), hub.mission_path(raw))
            for hook in (hub.mission_path(raw) / "hooks").iterdir():
                hook.unlink()
            refs = git("for-each-ref", "--format=%(objectname) %(refname)",
                       cwd=hub.mission_path(raw)).split("\n")
            events.record(hub, hub.mission_path(raw), [
                ("0" * 40, *line.split()) for line in refs if line], None)
            work = root / f"w{i}"
            git(*auth, "clone", "-q", "--branch", "attempts/ext", f"{url}/missions/{mid}.git",
                str(work), cwd=root)
            git("remote", "add", "raw", f"{url}/missions/{raw}.git", cwd=work)
            (work / "deliverable").mkdir()
            for f in (TASK / "golden").iterdir():
                shutil.copy(f, work / "deliverable" / f.name)
            git("add", "deliverable", cwd=work)
            git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
                "-m", "Deliver", cwd=work)
            order = [("origin", gated), ("raw", plain)]
            for remote, into in order if i % 2 else order[::-1]:
                _idle(hub)  # the DoD the gated push queued runs between pushes, not during
                time.sleep(0.2)  # and the watcher's after-the-fact judging of the raw push
                start = time.perf_counter()
                git(*auth, "push", "-q", remote, "attempts/ext", cwd=work)
                into.append(time.perf_counter() - start)
    finally:
        _stop(proc)
    return {"http_push_gate_p50_s": statistics.median(gated),
            "http_push_plain_p50_s": statistics.median(plain),
            "http_push_ratio": statistics.median(gated) / statistics.median(plain)}


def _market_hub(root: Path, agents: int) -> Hub:
    hub = init_hub(root / "market")
    files: dict[str, bytes | None] = {}
    for i in range(agents):
        aid = f"agent-{i:05d}"
        key = generate_key().public_line  # one key per actor: the registry refuses a shared one
        files[f"actors/{aid}.yaml"] = dump_yaml(Actor(
            id=aid, roles=["specialist"], owner="platform", key=key).model_dump(
            mode="json")).encode()
        files[f"agents/{aid}.yaml"] = dump_yaml({
            "schema_version": 1, "id": aid, "owner": "platform", "roles": ["specialist"],
            "contracts": ["contract.code_review@1.0.0"], "price": 100 + i % 50,
            "capacity": 4, "runtime": {"kind": "git"}}).encode()
        files[f"assessments/{aid}/0001.yaml"] = dump_yaml({
            "schema_version": 1, "agent": aid, "n": 1, "status": "listed", "badge": "gold",
            "quality": 90, "p50_seconds": 1.0, "cost": 100, "reasons": [],
            "at": "2026-01-01T00:00:00Z",
            "tasks": []}).encode()
    registrar.commit_files(hub, {p: d for p, d in files.items() if p.startswith("actors/")},
                          "actors\n", "platform")
    registrar.commit_files(hub, {p: d for p, d in files.items() if not p.startswith("actors/")},
                          "agents\n", "platform")
    return hub


def _reads(root: Path, agents: int, n: int) -> dict[str, float]:
    hub = _market_hub(root, agents)
    proc, url = _serve(hub)
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for name, path in (("page", "/"), ("api", "/api/agents")):
                first = client.get(path)  # warm the caches, check the answer
                assert first.status_code == 200 and "agent-00999" in first.text
                times = []
                start = time.perf_counter()
                for _ in range(n):
                    t = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append(time.perf_counter() - t)
                total = time.perf_counter() - start
                out[f"{name}_p50_s"] = statistics.median(times)
                out[f"{name}_p95_s"] = _pct(times, 0.95)
                out[f"{name}_rps"] = n / total
    finally:
        _stop(proc)
    return out


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aismm-http-") as tmp:
        root = Path(tmp)
        figures: dict[str, Any] = _pushes(root / "push", 5 if quick else 15)
        figures.update(_reads(root / "read", 1000, 10 if quick else 40))
    return figures


if __name__ == "__main__":
    for key, value in run("--quick" in sys.argv).items():
        print(f"{key:<24} {value:.4f}")
