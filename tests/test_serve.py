"""`aismm serve`: thin hooks answered over the socket; refs moved behind the gate are restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aismm import mission, registry
from aismm.clock import FixedClock
from aismm.hub import Hub
from aismm.ledger import Ledger
from tests.conftest import git

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"


def _wait(predicate, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture()
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    hub = Hub.init(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "me")],
                   check=True)
    registry.add_actor(hub, "me", ["specialist"], None, (tmp_path / "me.pub").read_text(), False)
    registry.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1000, cause="seed")
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                             "--interval", "0.5"], stderr=log, stdout=log,
                            env={**os.environ, "AISMM_NOW": "2026-01-01T00:00:00Z"})
    assert _wait(lambda: (hub.root / "run" / "aismm.sock").exists()), "server did not start"
    clone = tmp_path / "clone"
    git("clone", "-q", str(created.path), str(clone))
    git("switch", "-q", "attempts/me", cwd=clone)
    for key, value in (("gpg.format", "ssh"), ("user.signingkey", str(tmp_path / "me")),
                       ("commit.gpgsign", "true")):
        git("config", key, value, cwd=clone)
    yield hub, created, clone, tmp_path / "serve.log"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    log.close()


def test_push_is_judged_and_assessed_through_the_socket(served) -> None:  # type: ignore[no-untyped-def]
    hub, created, clone, log = served
    (clone / "deliverable").mkdir()
    for f in (TASK / "golden").iterdir():
        (clone / "deliverable" / f.name).write_bytes(f.read_bytes())
    git("add", "deliverable", cwd=clone)
    git("commit", "-q", "-m", "Deliver", cwd=clone)
    pushed = git("push", "origin", "attempts/me", cwd=clone, check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr
    repo_log = git("-C", str(created.path), "log", "--format=%s", "attempts/me").stdout
    assert repo_log.splitlines()[0].startswith("DoD pass on")


def test_forged_push_is_rejected_through_the_socket(served) -> None:  # type: ignore[no-untyped-def]
    hub, created, clone, log = served
    (clone / "verdicts").mkdir()
    (clone / "verdicts" / "platform.yaml").write_text("verdict: pass\n")
    git("add", "verdicts", cwd=clone)
    git("commit", "-q", "-m", "forge", cwd=clone)
    pushed = git("push", "origin", "attempts/me", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert ("remote: aismm: refs/heads/attempts/me: verdicts/platform.yaml: agent me may write "
            "only under deliverable/") in pushed.stderr
    assert git("-C", str(created.path), "rev-parse", "attempts/me").stdout.strip() == created.main


def test_ref_moved_behind_the_gates_back_is_restored(served) -> None:  # type: ignore[no-untyped-def]
    hub, created, clone, log = served
    (clone / "verdicts").mkdir()
    (clone / "verdicts" / "platform.yaml").write_text("verdict: pass\n")
    git("add", "verdicts", cwd=clone)
    git("commit", "-q", "-m", "forge", cwd=clone)
    forged = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    bare = str(created.path)
    git("-C", bare, "fetch", "-q", str(clone), "HEAD")  # objects in, no hooks run
    git("-C", bare, "update-ref", "refs/heads/attempts/me", forged)
    assert _wait(lambda: git("-C", bare, "rev-parse", "attempts/me").stdout.strip()
                 == created.main), log.read_text()
    assert _wait(lambda: "restored" in log.read_text())
    assert "agent me may write only under deliverable/" in log.read_text()


def test_second_server_on_the_same_hub_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    hub = served[0]
    done = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                           "--once"], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 1
    assert "another `aismm serve` is running" in done.stderr


def test_deleted_ref_is_restored(served) -> None:  # type: ignore[no-untyped-def]
    hub, created, clone, log = served
    bare = str(created.path)
    git("-C", bare, "update-ref", "-d", "refs/heads/accepted")
    assert _wait(lambda: git("-C", bare, "rev-parse", "--verify", "-q", "accepted",
                             check=False).stdout.strip() == created.main), log.read_text()
    assert "restored deleted" in log.read_text()
