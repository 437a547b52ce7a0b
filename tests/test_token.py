"""Access tokens: shown once, stored as a sha256 only, expiring, revocable, bound to an actor."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.infra.hub import Hub
from aismm.infra.tokens import TOKEN
from aismm.services import registrar, tokens
from tests import clikit
from tests.hubkit import START, copy_hub


@pytest.fixture
def hub(reference_hub: Path, tmp_path: Path) -> Hub:
    return copy_hub(reference_hub, tmp_path / "hub")


def test_create_prints_the_token_once_and_stores_only_its_hash(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    made = clikit.run(hub.root, capsys, "token", "create", "platform", "--json")
    assert made.code == 0, made.err
    data = made.json
    assert TOKEN.match(data["token"]) and data["actor"] == "platform"
    assert data["token"].split("_")[1] == data["id"] and data["expires"] is None
    raw = b"".join(p.read_bytes() for p in hub.root.glob("hub.db*"))
    assert data["token"].encode() not in raw  # never the token itself, in any db file
    with sqlite3.connect(hub.db_path) as conn:
        [(stored,)] = conn.execute("SELECT hash FROM tokens WHERE id = ?", (data["id"],))
    assert stored == hashlib.sha256(data["token"].encode()).hexdigest()
    listed = clikit.run(hub.root, capsys, "token", "list", "--json")
    assert listed.json == [{k: v for k, v in data.items() if k != "token"}]
    assert data["token"] not in listed.out
    assert tokens.authenticate(hub, data["token"]) == "platform"


def test_a_token_proves_only_its_own_actor(hub: Hub) -> None:
    made = tokens.create(hub, "platform")
    token = str(made["token"])
    assert tokens.authenticate(hub, token, actor="platform") == "platform"
    assert tokens.authenticate(hub, token, actor="arbiter") is None
    assert tokens.authenticate(hub, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.authenticate(hub, "aismm_00000000_" + "x" * 43) is None
    assert tokens.authenticate(hub, "") is None


def test_expiry_follows_the_hub_clock(hub: Hub) -> None:
    clock = FixedClock(START)
    timed = Hub(hub.root, clock=clock)
    made = tokens.create(timed, "platform", expires="PT2H")
    assert made["expires"] == "2026-01-01T02:00:00Z"
    clock.advance("PT1H59M")
    assert tokens.authenticate(timed, str(made["token"])) == "platform"
    clock.advance("PT1M")
    assert tokens.authenticate(timed, str(made["token"])) is None


def test_revoke_takes_effect_at_once(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    made = tokens.create(hub, "platform", note="laptop")
    keep = tokens.create(hub, "platform")
    done = clikit.run(hub.root, capsys, "token", "revoke", str(made["id"]), "--json")
    assert done.code == 0 and done.json["revoked"] is not None
    assert tokens.authenticate(hub, str(made["token"])) is None
    assert tokens.authenticate(hub, str(keep["token"])) == "platform"
    text = clikit.run(hub.root, capsys, "token", "list").out
    assert f"{made['id']}  platform" in text and "REVOKED" in text and "laptop" in text


@pytest.mark.parametrize(("args", "line"), [
    (("create", "nobody"), "aismm: nobody: "),
    (("create", "platform", "--expires", "soon"),
     "aismm: --expires soon: 'soon' is not an ISO 8601 duration like P3D or PT2H; give an "
     "ISO 8601 duration like P30D or PT12H"),
    (("create", "platform", "--expires", "PT0S"),
     "aismm: --expires PT0S: not a positive duration; give one like P30D"),
    (("revoke", "deadbeef"), "aismm: deadbeef: no such token id; see `aismm token list`"),
])
def test_bad_input_is_one_line_and_exit_2(hub: Hub, capsys: pytest.CaptureFixture[str],
                                          args: tuple[str, ...], line: str) -> None:
    result = clikit.run(hub.root, capsys, "token", *args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith(line)
    assert tokens.listing(hub) == []


def test_a_revoked_actors_token_proves_nothing(hub: Hub) -> None:
    registrar.add_actor(hub, "zoe", ["client"], None, None, True)
    made = tokens.create(hub, "zoe")
    assert tokens.authenticate(hub, str(made["token"])) == "zoe"
    registrar.revoke_actor(hub, "zoe")
    assert tokens.authenticate(hub, str(made["token"])) is None
    assert tokens.authenticate(hub, str(made["token"]), actor="zoe") is None
