"""An external (git runtime) agent is assessed through benchmark missions it completes by git."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from aismm.core.actor import Manifest, Runtime
from aismm.core.clock import FixedClock
from aismm.core.errors import ActorError
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import market, mission, registrar
from aismm.services.hubs import init_hub
from tests import hubkit
from tests.conftest import git

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "contracts" / "schema_design" / "benchmark"


def _setup(tmp_path: Path) -> tuple[Hub, Path]:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ext")],
                   check=True)
    registrar.add_actor(hub, "extco", ["client"], None, None, True)
    registrar.add_actor(hub, "ext", ["specialist"], "extco", (tmp_path / "ext.pub").read_text(),
                       False)
    market.register_manifest(hub, Manifest(
        id="ext", owner="extco", roles=["specialist"], contracts=["contract.schema_design@1.0.0"],
        price=100, capacity=2, runtime=Runtime(kind="git")), "extco")
    return hub, tmp_path / "ext"


def _agent(hub: Hub, key: Path, work: Path, stop: threading.Event, good: bool) -> None:
    """A plain-git agent: clones each benchmark mission and pushes the matching golden files."""
    served: set[str] = set()
    while not stop.is_set():
        for mid in hub.mission_ids(benchmark=True):
            if mid in served:
                continue
            repo = Repo(hub.mission_path(mid))
            request = repo.read(repo.ref("refs/heads/main") or "", "inputs/request.json")
            task = next(t for t in BENCH.iterdir()
                        if (t / "inputs" / "request.json").read_bytes() == request)
            clone = work / mid
            git("clone", "-q", str(hub.mission_path(mid)), str(clone))
            git("switch", "-q", "attempts/ext", cwd=clone)
            shutil.copytree(task / "golden", clone / "deliverable")
            if not good:  # a valid schema the gate lets through, that rejects every sample
                path = clone / "deliverable" / "schema.json"
                schema = json.loads(path.read_text())
                schema["maxProperties"] = 0
                path.write_text(json.dumps(schema, indent=2))
            git("add", "deliverable", cwd=clone)
            git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
                "-m", "Deliver", cwd=clone)
            git("push", "-q", "origin", "attempts/ext", cwd=clone)  # refused = a broken test
            served.add(mid)
        stop.wait(0.05)  # poll for new benchmark missions; return at once when stopped


@pytest.mark.parametrize("good", [True, False])
def test_external_agent_assessed_by_git(tmp_path: Path, good: bool) -> None:
    hub, key = _setup(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    stop = threading.Event()
    thread = threading.Thread(target=_agent, args=(hub, key, work, stop, good), daemon=True)
    thread.start()
    try:
        record = market.assess(hub, "ext", timeout=90).to_json()
    finally:
        stop.set()
        thread.join(10)
    tasks = sorted(p.name for p in BENCH.iterdir())
    assert sorted(r["task"] for r in record["tasks"]) == tasks
    if good:
        assert record["status"] == "listed", record["reasons"]
        assert all(r["dod"] == "pass" for r in record["tasks"])
    else:
        assert record["status"] == "rejected"
        assert any("DoD failed" in r for r in record["reasons"])
    assert hubkit.assessment_json(hub, "ext")["status"] == record["status"]
    # benchmark missions hold no money and stay out of the mission list
    assert hub.mission_ids() == []
    assert len(hub.mission_ids(benchmark=True)) == len(tasks)
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.history() == []


def test_silent_external_agent_is_rejected_after_the_timeout(tmp_path: Path) -> None:
    hub, _ = _setup(tmp_path)
    silence = 0.2  # the assessment's deadline: the test waits it out, so a short one
    record = market.assess(hub, "ext", timeout=silence).to_json()
    assert record["status"] == "rejected"
    assert all(r["misses"] == [f"no delivery within {silence:g}s"] for r in record["tasks"])
    registrar.add_actor(hub, "bea", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("bea", 1000, cause="seed")
    with pytest.raises(ActorError, match="not listed"):
        mission.create(hub, contract_ref="contract.schema_design", client="bea",
                       inputs=BENCH / "order" / "inputs", price=None, tier="T1", agents=["ext"])

