"""``aismm wallet deposit``: money limits (issue 11 item 13) and ``--ref`` (item 14).

Through the real CLI (in-process), a real hub and its real SQLite ledger.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from aismm.core.actor import Manifest
from aismm.core.errors import LedgerError
from aismm.infra.ledger import MAX_AMOUNT, MAX_BALANCE, Ledger, TransferSpec, transfer_id
from tests import clikit
from tests.clikit import Result

START = "2026-01-01T00:00:00Z"
ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
HUGE = str(2**63)  # 9223372036854775808: one past SQLite's largest integer


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Path:
    monkeypatch.setenv("AISMM_NOW", START)
    path = tmp_path / "hub"
    for args in (("hub", "init", str(path)),
                 ("actor", "add", "alice", "--role", "client", "--hosted"),
                 ("actor", "add", "bob", "--role", "specialist", "--hosted"),
                 ("actor", "add", "carol", "--role", "client", "--hosted")):
        assert clikit.run(path, capsys, *args).code == 0, args
    return path


def one_line(result: Result, code: int, line: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    assert result.err_lines == [line]


def ledger_state(hub: Path) -> tuple[dict[str, int], int]:
    with Ledger(hub / "hub.db") as ledger:
        return ledger.balances(), len(ledger.history())


# -- item 13: money limits ----------------------------------------------------------------------
def test_a_deposit_past_2_63_is_refused_and_changes_nothing(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert clikit.run(hub, capsys, "wallet", "deposit", "alice", "5").code == 0
    before = ledger_state(hub)
    for amount in (HUGE, str(2**63 - 1), str(2**62), str(MAX_AMOUNT + 1), str(10**30)):
        one_line(clikit.run(hub, capsys, "wallet", "deposit", "alice", amount), 2,
                 f"aismm: wallet deposit: AMOUNT {amount} is above the limit of {MAX_AMOUNT} "
                 f"tokens; deposit at most {MAX_AMOUNT} at a time")
        assert ledger_state(hub) == before
    assert clikit.run(hub, capsys, "ledger", "check").code == 0
    done = clikit.run(hub, capsys, "wallet", "deposit", "alice", str(MAX_AMOUNT), "--json")
    assert done.code == 0 and done.json["balance"] == MAX_AMOUNT + 5
    assert clikit.run(hub, capsys, "ledger", "check").code == 0


def test_a_price_past_the_limit_is_refused_and_changes_nothing(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert clikit.run(hub, capsys, "wallet", "deposit", "alice", "1000").code == 0
    before, missions = ledger_state(hub), sorted((hub / "missions").iterdir())
    for price in (HUGE, str(MAX_AMOUNT + 1)):
        one_line(clikit.run(hub, capsys, "mission", "create", "--contract", "contract.code_review",
                            "--client", "alice", "--inputs", str(TASK / "inputs"), "--tier", "T0",
                            "--agent", "bob", "--price", price), 2,
                 f"aismm: --price {price}: above the limit of {MAX_AMOUNT} tokens; offer at most "
                 f"{MAX_AMOUNT} (see Money limits in docs/protocol.md)")
        assert ledger_state(hub) == before
        assert sorted((hub / "missions").iterdir()) == missions


def test_documents_with_amounts_past_the_limit_fail_their_schema(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "code_review"
    shutil.copytree(ROOT / "contracts" / "code_review", folder)
    text = (folder / "contract.yaml").read_text()
    assert "max: " in text
    (folder / "contract.yaml").write_text(text.replace("max: ", f"max: {2**63} # ", 1))
    result = clikit.run(tmp_path, capsys, "contract", "validate", str(folder))
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert "1000000000000000" in result.err
    base = {"id": "bot", "owner": "acme", "roles": ["specialist"], "contracts": ["c"],
            "runtime": {"kind": "git"}}
    Manifest.model_validate({**base, "price": MAX_AMOUNT})
    with pytest.raises(ValidationError):
        Manifest.model_validate({**base, "price": MAX_AMOUNT + 1})


def test_balances_stay_within_the_limit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "hub.db") as ledger:
        with ledger.batch():
            for i in range(MAX_BALANCE // MAX_AMOUNT):
                ledger.deposit("alice", MAX_AMOUNT, f"d{i}")
        assert ledger.balance("client:alice") == MAX_BALANCE
        assert ledger.balance("world") == -MAX_BALANCE
        before = ledger.history()
        with pytest.raises(LedgerError, match="beyond the limit of 1000000000000000000 tokens"):
            ledger.deposit("alice", 1, "one-more")
        with pytest.raises(LedgerError, match=r"above the limit of 10{15} tokens"):
            ledger.post([TransferSpec(transfer_id(None, "t", "x"), "client:alice", "client:bob",
                                      MAX_AMOUNT + 1, None, "t", "x")])
        assert ledger.history() == before and ledger.check() == []


def test_the_ledger_columns_are_strict_integers(tmp_path: Path) -> None:
    with Ledger(tmp_path / "hub.db") as ledger:
        ledger.deposit("alice", 10, "d1")
    raw = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    row = "INSERT INTO ledger_transfers (id, debit, credit, amount, action, cause, at) VALUES " \
          "('x', 'world', 'client:bob', ?, 'deposit', 'c', 't')"
    for bad in (2**62, MAX_BALANCE + 1, 1e19, 1.5, "ten", b"\x01", 0, -1):
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(row, (bad,))
    for bad in (MAX_BALANCE + 1, -MAX_BALANCE - 1, 1e19, 10.5, "ten"):
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE ledger_balances SET balance = ? WHERE account = 'client:alice'",
                        (bad,))
    with pytest.raises(sqlite3.IntegrityError):  # balance + 2^63 - 1 would become a float
        raw.execute("UPDATE ledger_balances SET balance = balance + 9223372036854775807")
    raw.close()
    with Ledger(tmp_path / "hub.db") as ledger:
        assert ledger.balances() == {"client:alice": 10, "world": -10}


def test_ledger_check_is_exact_when_more_than_2_63_tokens_flowed(tmp_path: Path) -> None:
    """Balances are bounded, flows are not: 9300 round trips of 10^15 move 1.86·10^19."""
    pairs, per_chain = 9300, 150
    with Ledger(tmp_path / "hub.db") as ledger:
        ledger.deposit("alice", MAX_AMOUNT, "d1")
        chains = []
        for c in range(pairs // per_chain):
            chain = []
            for i in range(per_chain):
                n = c * per_chain + i
                chain += [TransferSpec(transfer_id(None, "t", f"p{n}", "out"), "client:alice",
                                       "client:bob", MAX_AMOUNT, None, "t", f"p{n}"),
                          TransferSpec(transfer_id(None, "t", f"p{n}", "back"), "client:bob",
                                       "client:alice", MAX_AMOUNT, None, "t", f"p{n}")]
            chains.append(chain)
        assert not [r for r in ledger.post_many(chains) if isinstance(r, LedgerError)]
        assert ledger.check() == []
        assert ledger.balances() == {"client:alice": MAX_AMOUNT, "world": -MAX_AMOUNT}


# -- item 14: wallet deposit --ref ----------------------------------------------------------------
def test_a_retried_deposit_with_ref_posts_once_and_prints_the_original(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = clikit.run(hub, capsys, "wallet", "deposit", "alice", "100", "--ref", "inv-7",
                       "--json")
    assert first.code == 0, first.err
    assert first.json["replayed"] is False and first.json["balance"] == 100
    original = first.json["transfer"]
    assert original["amount"] == 100 and original["credit"] == "client:alice"

    again = clikit.run(hub, capsys, "wallet", "deposit", "alice", "100", "--ref", "inv-7",
                       "--json")
    assert again.code == 0, again.err
    assert again.json["replayed"] is True and again.json["transfer"] == original
    assert again.json["balance"] == 100
    text = clikit.run(hub, capsys, "wallet", "deposit", "alice", "100", "--ref", "inv-7")
    assert text.code == 0 and text.out.strip() == (
        f"Deposit --ref inv-7 was already posted at {original['at']}: 100 tokens to alice "
        f"(transfer {original['id']}); nothing changed; balance 100")
    balances, count = ledger_state(hub)
    assert balances["client:alice"] == 100 and count == 1


def test_the_same_ref_with_another_amount_is_refused(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert clikit.run(hub, capsys, "wallet", "deposit", "alice", "100", "--ref", "inv-7").code == 0
    before = ledger_state(hub)
    one_line(clikit.run(hub, capsys, "wallet", "deposit", "alice", "150", "--ref", "inv-7"), 2,
             f"aismm: wallet deposit: --ref inv-7 was already used for 100 tokens to alice at "
             f"{START}; repeat it with AMOUNT 100 or give a new --ref")
    assert ledger_state(hub) == before


def test_a_ref_is_scoped_to_one_wallet_and_must_be_printable(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for actor in ("alice", "carol"):
        assert clikit.run(hub, capsys, "wallet", "deposit", actor, "100", "--ref", "inv-7"
                          ).code == 0
    before = ledger_state(hub)
    assert before[0]["client:alice"] == before[0]["client:carol"] == 100
    for bad in ("", "x" * 201, "tab\there"):
        result = clikit.run(hub, capsys, "wallet", "deposit", "alice", "1", "--ref", bad)
        assert result.code == 2 and len(result.err_lines) == 1, result.err
        assert "is not 1-200 printable characters; use your invoice or payment id" in result.err
    assert ledger_state(hub) == before


def test_without_ref_every_call_is_a_new_deposit(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert clikit.run(hub, capsys, "wallet", "deposit", "alice", "100").code == 0
    balances, count = ledger_state(hub)
    assert balances["client:alice"] == 200 and count == 2
