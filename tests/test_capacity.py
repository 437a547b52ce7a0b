"""A direct hire beyond an agent's declared capacity is refused (exit 2), and nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.core.actor import Manifest, Runtime
from aismm.core.clock import FixedClock
from aismm.infra.ledger import Ledger
from aismm.services import market, registrar
from aismm.services.hubs import init_hub
from clikit import run
from hubkit import INPUTS


def test_hiring_beyond_capacity_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    registrar.add_actor(hub, "busyco", ["client"], None, None, True)
    registrar.add_actor(hub, "busy", ["specialist"], "busyco", None, True)
    market.register_manifest(hub, Manifest(
        id="busy", owner="busyco", roles=["specialist"],
        contracts=["contract.code_review@1.0.0"], price=100, capacity=2,
        runtime=Runtime(kind="git")), "busyco")
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000, cause="seed")
    args = ("mission", "create", "--contract", "contract.code_review", "--client", "alice",
            "--tier", "T0", "--inputs", str(INPUTS), "--agent", "busy", "--json")
    for _ in range(2):
        assert run(hub.root, capsys, *args).code == 0
    missions = sorted(p.name for p in hub.missions_dir.iterdir())
    with Ledger(hub.db_path, hub.clock) as ledger:
        before = ledger.balances()

    third = run(hub.root, capsys, *args)

    assert (third.code, third.out) == (2, "")
    assert third.err_lines == ["aismm: --agent busy: at capacity (2 of 2 open missions); pick "
                               "another agent or hire it when one closes"]
    assert sorted(p.name for p in hub.missions_dir.iterdir()) == missions
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.balances() == before
