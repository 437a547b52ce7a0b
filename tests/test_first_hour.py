"""Small things a new user trips over (issue 14 item 10)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.infra.ledger import Ledger
from aismm.services import registrar
from aismm.services.hubs import init_hub
from clikit import run
from hubkit import INPUTS


def test_registry_git_can_be_checked_in_place(tmp_path: Path) -> None:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    shown = subprocess.run(["git", "-C", str(hub.registry_path), "log", "--show-signature",
                            "-1"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert 'Good "git" signature for platform@aismm.invalid' in shown.stdout + shown.stderr


def test_status_after_a_refund_names_no_provider(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    registrar.add_actor(hub, "bob", ["specialist"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1000, cause="seed")
    made = run(hub.root, capsys, "mission", "create", "--contract", "contract.code_review",
               "--client", "alice", "--tier", "T0", "--inputs", str(INPUTS), "--price", "100",
               "--agent", "bob", "--json")
    assert made.code == 0, made.err
    mid = made.json["id"]
    assert run(hub.root, capsys, "mission", "cancel", mid).code == 0
    text = run(hub.root, capsys, "mission", "status", mid).out
    assert "escrow: refunded — 102 back to the client" in text
    assert "provider:None" not in text and "0 to provider" not in text
