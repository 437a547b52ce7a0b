"""Creating a mission is an event like any other: the hub runs its hosted agents (inline when
no server runs, by the worker otherwise); `mission run` stays for re-running by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.core.model import dump_yaml, load_yaml
from aismm.infra.ledger import Ledger
from aismm.services import market, registrar
from aismm.services.hubs import init_hub
from clikit import run
from hubkit import INPUTS

AGENT = "ref-code-reviewer"


def _hub(root: Path, processing: str = "inline") -> Path:
    hub = init_hub(root / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    market.register_reference_agents(hub, assess_them=False)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000, cause="seed")
    if processing != "inline":
        cfg = hub.root / "hub.yaml"
        data = load_yaml(cfg.read_text(), "hub.yaml")
        data["processing"] = processing
        cfg.write_text(dump_yaml(data))
    return hub.root


def _create(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    made = run(root, capsys, "mission", "create", "--contract", "contract.code_review",
               "--client", "alice", "--tier", "T0", "--inputs", str(INPUTS), "--price", "400",
               "--agent", AGENT, "--json")
    assert made.code == 0, made.err
    data: dict[str, object] = made.json
    return data


def test_a_hosted_agent_runs_when_the_mission_is_created(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    root = _hub(tmp_path)
    data = _create(root, capsys)
    lines = data["lines"]
    assert isinstance(lines, list)
    assert any(str(line).startswith(f"aismm: {AGENT} delivered ") for line in lines), lines
    assert f"aismm: platform DoD on {AGENT}: PASS (100/100)" in lines
    status = run(root, capsys, "mission", "status", str(data["id"]), "--json").json
    assert status["attempts"][0]["state"] == "awaiting_acceptance"


def test_under_a_server_the_worker_dispatches(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = _hub(tmp_path, processing="daemon")
    data = _create(root, capsys)
    assert data["lines"] == []
    status = run(root, capsys, "mission", "status", str(data["id"]), "--json").json
    assert status["attempts"][0]["state"] == "assigned"
    done = run(root, capsys, "process")  # what `aismm serve` runs on its loop
    assert done.code == 0, done.err
    assert f"{AGENT} delivered " in done.out
    status = run(root, capsys, "mission", "status", str(data["id"]), "--json").json
    assert status["attempts"][0]["state"] == "awaiting_acceptance"
