"""The escrow ledger against real SQLite files: examples, properties, a shadow model, a race."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aismm.core.clock import FixedClock, iso
from aismm.core.errors import ConflictError, LedgerError
from aismm.infra.ledger import Closure, Ledger, Transfer, TransferSpec, fee_for, transfer_id

REPO = Path(__file__).resolve().parent.parent
START = "2026-01-01T00:00:00Z"


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture()
def ledger(tmp_path: Path, clock: FixedClock) -> Any:
    with Ledger(tmp_path / "hub.db", clock) as opened:
        yield opened


def spec(tid: str, debit: str, credit: str, amount: int, cause: str = "c1") -> TransferSpec:
    return TransferSpec(tid, debit, credit, amount, None, "test", cause)


def tid(n: int) -> str:
    return transfer_id(None, "test", "c1", str(n))


# -- ids and fees -------------------------------------------------------------------------------


def test_transfer_id_is_pinned_and_separates_its_parts() -> None:
    assert transfer_id("m1", "fund", "open-1", "price") == "4b4b2093a964a4f970d74e14c1fb6c1e"
    assert transfer_id(None, "deposit", "d1", "client:alice") == "65d7622967db44973cce61009adc371b"
    variants = {
        transfer_id("m1", "fund", "open-1", "price"),
        transfer_id("m1", "fund", "open-1", "fee"),
        transfer_id("m1", "fund", "open-1"),
        transfer_id("m1", "fun", "dopen-1", "price"),
        transfer_id("", "fund", "open-1", "price"),
        transfer_id(None, "fund", "open-1", "price"),
        transfer_id("m1", "settle", "open-1", "price"),
    }
    assert len(variants) == 7


@given(price=st.integers(0, 10**15), rate=st.integers(0, 10000))
@settings(max_examples=500)
def test_fee_is_half_up_bounded_and_deterministic(price: int, rate: int) -> None:
    fee = fee_for(price, rate)
    exact = (Decimal(price) * rate / Decimal(10000)).quantize(Decimal(1), ROUND_HALF_UP)
    assert fee == int(exact)
    assert 0 <= fee <= price
    assert fee == fee_for(price, rate)


@pytest.mark.parametrize(
    ("price", "rate", "fee"),
    [(5, 1000, 1), (15, 1000, 2), (25, 1000, 3), (4, 1000, 0), (0, 10000, 0), (7, 10000, 7),
     (1000, 1000, 100), (1, 5000, 1), (1, 4999, 0), (199, 50, 1)],
)
def test_fee_examples(price: int, rate: int, fee: int) -> None:
    assert fee_for(price, rate) == fee


@pytest.mark.parametrize(
    ("price", "rate", "message"),
    [
        (100, 10001, "fee_for: rate 10001 is not 0..10000 basis points; pass an int"),
        (100, -1, "fee_for: rate -1 is not 0..10000 basis points; pass an int"),
        (-1, 100, "fee_for: price: amount -1 is not allowed; pass zero or more tokens"),
        (1.5, 100, "fee_for: price: amount 1.5 is not an integer; use whole tokens"),
    ],
)
def test_fee_rejects_bad_input(price: Any, rate: int, message: str) -> None:
    with pytest.raises(LedgerError) as info:
        fee_for(price, rate)
    assert str(info.value) == message


# -- the mission lifecycle ----------------------------------------------------------------------


def test_fund_and_settle_move_exact_amounts(ledger: Ledger) -> None:
    ledger.deposit("alice", 1000, "d1")
    funded = ledger.fund("m1", "alice", 100, 10, "open-1")
    assert [(t.debit, t.credit, t.amount, t.action) for t in funded] == [
        ("client:alice", "escrow:m1", 100, "fund"), ("client:alice", "escrow:m1", 10, "fund")]
    assert [t.id for t in funded] == [transfer_id("m1", "fund", "open-1", "price"),
                                      transfer_id("m1", "fund", "open-1", "fee")]
    done = ledger.settle("m1", "alice", "bob", 80, 8, "merge-1")
    assert ledger.balances() == {"world": -1000, "client:alice": 912, "escrow:m1": 0,
                                 "provider:bob": 80, "platform:fees": 8}
    assert done.to_dict() == {
        "mission": "m1", "kind": "settled", "cause": "merge-1", "client": "alice",
        "provider_owner": "bob", "provider": 80, "fee": 8, "client_refund": 22,
        "transfers": [transfer_id("m1", "settle", "merge-1", leg)
                      for leg in ("price", "fee", "remainder")],
        "at": START,
    }
    assert list(done.to_dict()) == ["mission", "kind", "cause", "client", "provider_owner",
                                    "provider", "fee", "client_refund", "transfers", "at"]
    assert ledger.closure("m1") == done
    assert ledger.check() == []


def test_refund_keeps_the_fee_for_the_platform_and_cancel_returns_all(ledger: Ledger) -> None:
    ledger.deposit("alice", 500, "d1")
    ledger.fund("m1", "alice", 100, 10, "open-1")
    ledger.fund("m2", "alice", 200, 20, "open-2")
    expired = ledger.refund("m1", "alice", 10, "deadline-1")
    cancelled = ledger.refund("m2", "alice", 0, "cancel-2")
    assert (expired.kind, expired.provider, expired.fee, expired.client_refund) == (
        "refunded", 0, 10, 100)
    assert (cancelled.fee, cancelled.client_refund, len(cancelled.transfers)) == (0, 220, 1)
    assert ledger.balances() == {"world": -500, "client:alice": 490, "escrow:m1": 0,
                                 "escrow:m2": 0, "platform:fees": 10}
    assert ledger.check() == []


def test_replays_are_idempotent(ledger: Ledger, clock: FixedClock) -> None:
    first_deposit = ledger.deposit("alice", 300, "d1")
    first_fund = ledger.fund("m1", "alice", 100, 10, "open-1")
    first = ledger.settle("m1", "alice", "bob", 100, 10, "merge-1")
    clock.advance("PT1H")
    assert ledger.deposit("alice", 300, "d1") == first_deposit
    assert ledger.fund("m1", "alice", 100, 10, "open-1") == first_fund
    assert ledger.settle("m1", "alice", "bob", 100, 10, "merge-1") == first
    assert ledger.balances() == {"world": -300, "client:alice": 190, "escrow:m1": 0,
                                 "provider:bob": 100, "platform:fees": 10}
    assert len(ledger.history()) == 5
    assert [t.seq for t in ledger.history()] == [1, 2, 3, 4, 5]


def test_state_survives_reopening_and_shares_the_file(tmp_path: Path, clock: FixedClock) -> None:
    db = tmp_path / "hub.db"
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
    other.execute("INSERT INTO events (body) VALUES ('kept')")
    other.commit()
    other.close()
    with Ledger(db, clock) as first:
        first.deposit("alice", 70, "d1")
    with Ledger(db, clock) as second:
        assert second.balance("client:alice") == 70
        assert second.balance("client:nobody") == 0
    check = sqlite3.connect(db)
    assert check.execute("SELECT body FROM events").fetchall() == [("kept",)]
    assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    check.close()


def test_history_filters_by_account_in_posting_order(ledger: Ledger, clock: FixedClock) -> None:
    ledger.deposit("alice", 50, "d1")
    clock.advance("PT5M")
    ledger.deposit("carol", 60, "d2")
    ledger.fund("m1", "alice", 40, 0, "open-1")
    assert [(t.seq, t.credit, t.at) for t in ledger.history("client:alice")] == [
        (1, "client:alice", START), (3, "escrow:m1", "2026-01-01T00:05:00Z")]
    assert [t.seq for t in ledger.history()] == [1, 2, 3]
    assert ledger.history("escrow:m1")[0].to_dict() == {
        "id": transfer_id("m1", "fund", "open-1", "price"), "debit": "client:alice",
        "credit": "escrow:m1", "amount": 40, "mission": "m1", "action": "fund",
        "cause": "open-1", "seq": 3, "at": "2026-01-01T00:05:00Z"}


# -- error messages -----------------------------------------------------------------------------


def test_insufficient_funds_names_account_balance_and_shortfall(ledger: Ledger) -> None:
    ledger.deposit("alice", 50, "d1")
    with pytest.raises(LedgerError) as info:
        ledger.fund("m1", "alice", 100, 10, "open-1")
    assert str(info.value) == (
        "client:alice: insufficient funds: balance 50, the chain takes 110, short by 60; "
        "deposit at least 60 more or lower the amount")


def test_idempotency_conflict_message(ledger: Ledger) -> None:
    ledger.deposit("alice", 5, "d1")
    with pytest.raises(LedgerError) as info:
        ledger.deposit("alice", 6, "d1")
    assert str(info.value) == (
        f"transfer {transfer_id(None, 'deposit', 'd1', 'client:alice')}: was already posted with "
        "a different body (world -> client:alice 5, deposit by d1); derive a new id for a new "
        "transfer or repeat the original exactly")
    assert ledger.balances() == {"world": -5, "client:alice": 5}


def test_conflicting_duplicate_inside_one_chain(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="was already posted with a different body"):
        ledger.post([spec(tid(1), "world", "client:alice", 5),
                     spec(tid(1), "world", "client:alice", 6)])
    same = ledger.post([spec(tid(1), "world", "client:alice", 5),
                        spec(tid(1), "world", "client:alice", 5)])
    assert same[0] == same[1]
    assert ledger.balances() == {"world": -5, "client:alice": 5}


ACCOUNTS = "use world, platform:fees, client:<actor>, provider:<owner> or escrow:<mission>"
TWO_ACCOUNTS = "move tokens between two different accounts"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (spec(tid(1), "bank", "client:alice", 5),
         f"account 'bank': not a valid account; {ACCOUNTS}"),
        (spec(tid(1), "world", "client:Alice", 5),
         f"account 'client:Alice': not a valid account; {ACCOUNTS}"),
        (spec(tid(1), "world", "client:alice", 0),
         f"transfer {tid(1)}: amount 0 is not allowed; pass more than zero tokens"),
        (spec(tid(1), "world", "client:alice", -3),
         f"transfer {tid(1)}: amount -3 is not allowed; pass more than zero tokens"),
        (spec(tid(1), "world", "client:alice", True),
         f"transfer {tid(1)}: amount True is not an integer; use whole tokens"),
        (spec(tid(1), "world", "world", 5),
         f"transfer {tid(1)}: debit and credit are both world; {TWO_ACCOUNTS}"),
        (spec("not-hex", "world", "client:alice", 5),
         "id 'not-hex': not a valid id; use 32-64 lowercase hex; derive it with transfer_id()"),
        (spec(tid(1), "world", "client:alice", 5, cause=""),
         "cause '': not a valid cause; give 1-256 printable characters"),
    ],
)
def test_invalid_transfers_are_refused(ledger: Ledger, bad: TransferSpec, message: str) -> None:
    with pytest.raises(LedgerError) as info:
        ledger.post([bad])
    assert str(info.value) == message
    assert ledger.history() == []


def test_mission_operation_errors(ledger: Ledger) -> None:
    ledger.deposit("alice", 500, "d1")
    cases: list[tuple[Any, str]] = [
        (lambda: ledger.settle("m9", "alice", "bob", 10, 1, "merge-9"),
         "escrow:m9: mission is not funded; fund it before closing it"),
        (lambda: ledger.fund("m1", "alice", 0, 0, "open-1"),
         "escrow:m1: price and fee are both 0; fund at least one token"),
        (lambda: ledger.fund("m1", "alice", -5, 1, "open-1"),
         "escrow:m1: price: amount -5 is not allowed; pass zero or more tokens"),
        (lambda: ledger.fund("m 1", "alice", 5, 1, "open-1"),
         "mission 'm 1': not a valid mission; use 1-128 letters, digits, '.', '_' or '-'"),
        (lambda: ledger.deposit("Alice", 5, "d2"),
         "actor 'Alice': not a valid actor; use ^[a-z][a-z0-9-]{1,38}$"),
    ]
    for call, message in cases:
        with pytest.raises(LedgerError) as info:
            call()
        assert str(info.value) == message
    ledger.fund("m1", "alice", 100, 10, "open-1")
    with pytest.raises(LedgerError) as info:
        ledger.settle("m1", "alice", "bob", 190, 10, "merge-1")
    assert str(info.value) == (
        "escrow:m1: insufficient funds: balance 110, settled takes 200, short by 90; "
        "lower the amounts")
    assert ledger.balances() == {"world": -500, "client:alice": 390, "escrow:m1": 110}


def test_closing_twice(ledger: Ledger) -> None:
    ledger.deposit("alice", 500, "d1")
    ledger.fund("m1", "alice", 100, 10, "open-1")
    ledger.refund("m1", "alice", 10, "deadline-1")
    with pytest.raises(ConflictError) as conflict:
        ledger.settle("m1", "alice", "bob", 100, 10, "merge-1")
    assert str(conflict.value) == (
        "escrow:m1: already refunded by deadline-1; re-read the mission, its escrow is closed")
    with pytest.raises(ConflictError, match="^escrow:m1: already refunded by deadline-1;"):
        ledger.refund("m1", "alice", 0, "cancel-1")
    with pytest.raises(LedgerError) as changed:
        ledger.refund("m1", "alice", 0, "deadline-1")
    assert str(changed.value) == (
        "escrow:m1: refunded by deadline-1 was already posted with a different body; repeat "
        "the original client, provider and amounts")
    with pytest.raises(LedgerError) as late:
        ledger.fund("m1", "alice", 100, 10, "open-again")
    assert str(late.value) == "escrow:m1: mission is already closed; open a new mission"
    assert ledger.balances() == {"world": -500, "client:alice": 490, "escrow:m1": 0,
                                 "platform:fees": 10}


def test_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "hub.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=rf"^{junk}: cannot open the ledger database \(file is "
                                          r"not a database\); check the path"):
        Ledger(junk, FixedClock(START))


# -- atomicity ----------------------------------------------------------------------------------


def test_failing_chain_writes_nothing(ledger: Ledger) -> None:
    ledger.deposit("alice", 100, "d1")
    ledger.post([spec(tid(9), "client:alice", "provider:bob", 10)])
    before = (ledger.balances(), ledger.history())
    with pytest.raises(LedgerError, match="^client:alice: insufficient funds: balance 90, the "
                                          "chain takes 120, short by 30;"):
        ledger.post([spec(tid(1), "client:alice", "escrow:m1", 60),
                     spec(tid(2), "client:alice", "escrow:m1", 60)])
    with pytest.raises(LedgerError, match="already posted with a different body"):
        ledger.post([spec(tid(3), "client:alice", "escrow:m1", 1),
                     spec(tid(9), "client:alice", "provider:bob", 11)])
    assert (ledger.balances(), ledger.history()) == before
    assert ledger.check() == []


def test_batch_undoes_a_failing_operation_alone(ledger: Ledger) -> None:
    ledger.deposit("alice", 100, "d1")
    with ledger.batch():
        ledger.fund("m1", "alice", 50, 5, "open-1")
        with pytest.raises(LedgerError, match="short by 55"):
            ledger.fund("m2", "alice", 100, 0, "open-2")
        ledger.settle("m1", "alice", "bob", 50, 5, "merge-1")
    assert ledger.balances() == {"world": -100, "client:alice": 45, "escrow:m1": 0,
                                 "provider:bob": 50, "platform:fees": 5}
    with pytest.raises(RuntimeError), ledger.batch():
        ledger.deposit("alice", 1, "d2")
        raise RuntimeError("abandon the batch")
    assert ledger.balance("client:alice") == 45
    results = ledger.post_many([[spec(tid(1), "world", "client:carol", 7)],
                                [spec(tid(2), "client:carol", "provider:bob", 8)]])
    assert isinstance(results[0], list) and results[0][0].amount == 7
    assert isinstance(results[1], LedgerError) and "short by 1" in str(results[1])
    assert ledger.balance("client:carol") == 7
    assert ledger.check() == []


def test_check_reports_tampering(tmp_path: Path, ledger: Ledger) -> None:
    ledger.deposit("alice", 200, "d1")
    ledger.fund("m1", "alice", 100, 10, "open-1")
    ledger.settle("m1", "alice", "bob", 100, 10, "merge-1")
    raw = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    raw.execute("UPDATE ledger_balances SET balance = balance + 1 WHERE account = 'client:alice'")
    raw.execute("DELETE FROM ledger_closures")
    raw.close()
    assert ledger.check() == [
        "ledger: balances sum to 1, not 0",
        "client:alice: cached balance 91 != replayed 90",
        "escrow:m1: has closing transfers but no closure",
    ]


# -- concurrency --------------------------------------------------------------------------------

RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from aismm.core.clock import FixedClock
    from aismm.core.errors import ConflictError
    from aismm.infra.ledger import Ledger
    db, mode, gate, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    with Ledger(Path(db), FixedClock("2026-01-01T00:00:00Z")) as ledger:
        for i in range(count):
            (gate / f"{i}-{mode}").touch()  # meet the rival at every mission, then race it
            deadline = time.monotonic() + 20
            while len(list(gate.glob(f"{i}-*"))) < 2:
                if time.monotonic() > deadline:
                    sys.exit(f"m{i}: the rival never arrived")
            try:
                if mode == "refund":
                    done = ledger.refund(f"m{i}", "alice", 10, "deadline-1")
                else:
                    done = ledger.settle(f"m{i}", "alice", "bob", 100, 10, "merge-1")
                print(f"ok m{i} {done.kind} {' '.join(done.transfers)}", flush=True)
            except ConflictError as exc:
                print(f"conflict m{i} {exc}", flush=True)
""")


@pytest.mark.parametrize("rival", ["refund", "settle-too"])
def test_two_processes_close_each_mission_exactly_once(tmp_path: Path, rival: str) -> None:
    count, rounds = 25, 2
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(rounds):
        db, gate = tmp_path / f"race{round_}.db", tmp_path / f"gate{round_}"
        gate.mkdir()
        with Ledger(db, FixedClock(START)) as ledger:
            ledger.deposit("alice", 110 * count, "d1")
            for i in range(count):
                ledger.fund(f"m{i}", "alice", 100, 10, f"open-{i}")
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(db), mode, str(gate),
                                   str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for mode in ("settle", rival)]
        try:
            outputs = [p.communicate(timeout=60) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
        lines = [dict(line.split(" ", 2)[1::-1] for line in out.splitlines())
                 for out, _ in outputs]
        with Ledger(db, FixedClock(START)) as ledger:
            for i in range(count):
                closure = ledger.closure(f"m{i}")
                assert closure is not None
                answers = [f"{lines[k][f'm{i}']}" for k in range(2)]
                if rival == "settle-too":
                    assert answers == ["ok", "ok"]
                    assert closure.kind == "settled"
                else:
                    assert sorted(answers) == ["conflict", "ok"]
                    loser = outputs[answers.index("conflict")][0]
                    assert (f"conflict m{i} escrow:m{i}: already {closure.kind} by "
                            f"{closure.cause}; re-read the mission, its escrow is closed") in loser
            settled = sum(ledger.closure(f"m{i}").kind == "settled"  # type: ignore[union-attr]
                          for i in range(count))
            expected = {"world": -110 * count, "client:alice": 100 * (count - settled),
                        "platform:fees": 10 * count, **{f"escrow:m{i}": 0 for i in range(count)}}
            assert ledger.balances() == expected | ({"provider:bob": 100 * settled} if settled
                                                    else {})
            assert ledger.check() == []
            closing = [t for t in ledger.history() if t.action in ("settle", "refund")]
            assert len(closing) == 2 * count


# -- the shadow model ---------------------------------------------------------------------------

MISSIONS = [f"m{i}" for i in range(4)]
CLIENT = {"m0": "alice", "m1": "alice", "m2": "carol", "m3": "carol"}
amounts = st.integers(0, 120)


class Shadow:
    """The ledger's rules in plain Python: transfers by id, balances, closures."""

    def __init__(self) -> None:
        self.transfers: dict[str, tuple[str, str, int]] = {}
        self.balances: dict[str, int] = {}
        self.closures: dict[str, tuple[str, str, str | None, int, int, int]] = {}

    def post(self, legs: list[tuple[str, str, str, int]]) -> bool:
        """Apply (id, debit, credit, amount) legs all or nothing; False if refused."""
        new = {}
        for leg_id, debit, credit, amount in legs:
            if leg_id in self.transfers:
                if self.transfers[leg_id] != (debit, credit, amount):
                    return False
            else:
                new[leg_id] = (debit, credit, amount)
        after = dict(self.balances)
        for debit, credit, amount in new.values():
            after[debit] = after.get(debit, 0) - amount
            after[credit] = after.get(credit, 0) + amount
        if any(v < 0 for k, v in after.items() if k != "world"):
            return False
        self.transfers.update(new)
        self.balances = after
        return True


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="aismm-ledger-")
        self.clock = FixedClock(START)
        self.ledger = Ledger(Path(self.dir) / "hub.db", self.clock)
        self.shadow = Shadow()
        self.done: list[tuple[str, tuple[Any, ...], Any]] = []

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir)

    def _call(self, op: str, args: tuple[Any, ...]) -> Any:
        return getattr(self.ledger, op)(*args)

    def _expect(self, op: str, args: tuple[Any, ...], ok: bool, error: type[Exception]) -> Any:
        before = (self.ledger.balances(), len(self.ledger.history()))
        event(f"{op}: {'ok' if ok else error.__name__}")
        if ok:
            result = self._call(op, args)
            self.done.append((op, args, result))
            return result
        with pytest.raises(error):
            self._call(op, args)
        assert (self.ledger.balances(), len(self.ledger.history())) == before
        return None

    @rule(actor=st.sampled_from(["alice", "carol"]), amount=st.integers(1, 400),
          cause=st.sampled_from(["d1", "d2", "d3", "d4", "d5"]))
    def deposit(self, actor: str, amount: int, cause: str) -> None:
        acct = f"client:{actor}"
        leg_id = transfer_id(None, "deposit", cause, acct)
        new = leg_id not in self.shadow.transfers
        ok = self.shadow.post([(leg_id, "world", acct, amount)])
        result = self._expect("deposit", (actor, amount, cause), ok, LedgerError)
        if ok and new:
            assert (result[0].at, result[0].seq) == (iso(self.clock.now()),
                                                     len(self.ledger.history()))

    @rule(mission=st.sampled_from(MISSIONS), price=amounts, fee=st.integers(0, 20),
          cause=st.sampled_from(["o1", "o2"]))
    def fund(self, mission: str, price: int, fee: int, cause: str) -> None:
        payer, escrow = f"client:{CLIENT[mission]}", f"escrow:{mission}"
        legs = [(transfer_id(mission, "fund", cause, leg), payer, escrow, amount)
                for leg, amount in (("price", price), ("fee", fee)) if amount]
        replay = all(self.shadow.transfers.get(i) == (d, c, a) for i, d, c, a in legs)
        ok = bool(legs) and (mission not in self.shadow.closures or replay)
        ok = ok and self.shadow.post(legs)
        self._expect("fund", (mission, CLIENT[mission], price, fee, cause), ok, LedgerError)

    def _close(self, mission: str, kind: str, owner: str | None, price: int, fee: int,
               cause: str) -> None:
        client, escrow = CLIENT[mission], f"escrow:{mission}"
        args: tuple[Any, ...] = ((mission, client, owner, price, fee, cause) if kind == "settled"
                                 else (mission, client, fee, cause))
        op = "settle" if kind == "settled" else "refund"
        old = self.shadow.closures.get(mission)
        if old is not None:
            if old[:2] != (kind, cause):
                self._expect(op, args, False, ConflictError)
            else:
                self._expect(op, args, old[2:5] == (owner, price, fee), LedgerError)
            return
        held = self.shadow.balances.get(escrow, 0)
        if held == 0 or price + fee > held:
            self._expect(op, args, False, LedgerError)
            return
        rest = "remainder" if kind == "settled" else "refund"
        legs = [(transfer_id(mission, op, cause, leg), escrow, credit, amount)
                for leg, credit, amount in (("price", f"provider:{owner}", price),
                                            ("fee", "platform:fees", fee),
                                            (rest, f"client:{client}", held - price - fee))
                if amount]
        assert self.shadow.post(legs)
        self.shadow.closures[mission] = (kind, cause, owner, price, fee, held - price - fee)
        result = self._expect(op, args, True, LedgerError)
        assert result.transfers == tuple(leg[0] for leg in legs)
        assert (result.provider, result.fee, result.client_refund) == (price, fee,
                                                                       held - price - fee)

    @rule(mission=st.sampled_from(MISSIONS), owner=st.sampled_from(["bob", "dave"]),
          price=amounts, fee=st.integers(0, 20), cause=st.sampled_from(["a1", "a2"]))
    def settle(self, mission: str, owner: str, price: int, fee: int, cause: str) -> None:
        self._close(mission, "settled", owner, price, fee, cause)

    @rule(mission=st.sampled_from(MISSIONS), owner=st.sampled_from(["bob", "dave"]),
          discount=st.integers(0, 3), cause=st.sampled_from(["a1", "a2"]))
    def settle_as_funded(self, mission: str, owner: str, discount: int, cause: str) -> None:
        fee = self._funded(mission, "fee")
        price = max(self._funded(mission, "price") - discount, 0)
        self._close(mission, "settled", owner, price, fee, cause)

    @rule(mission=st.sampled_from(MISSIONS), fee=st.integers(0, 30))
    def refund(self, mission: str, fee: int) -> None:
        self._close(mission, "refunded", None, 0, fee, "arbiter")

    @rule(mission=st.sampled_from(MISSIONS))
    def cancel(self, mission: str) -> None:
        self._close(mission, "refunded", None, 0, 0, "cancel")

    @rule(mission=st.sampled_from(MISSIONS))
    def expire(self, mission: str) -> None:
        self._close(mission, "refunded", None, 0, self._funded(mission, "fee"), "deadline")

    def _funded(self, mission: str, leg: str) -> int:
        ids = {transfer_id(mission, "fund", cause, leg) for cause in ("o1", "o2")}
        return sum(self.shadow.transfers[i][2] for i in ids if i in self.shadow.transfers)

    @precondition(lambda self: bool(self.done))
    @rule(pick=st.integers(0, 10**6))
    def replay_same(self, pick: int) -> None:
        op, args, result = self.done[pick % len(self.done)]
        before = self.ledger.balances()
        assert self._call(op, args) == result
        assert self.ledger.balances() == before

    @precondition(lambda self: bool(self.done))
    @rule(pick=st.integers(0, 10**6))
    def replay_changed(self, pick: int) -> None:
        op, args, _ = self.done[pick % len(self.done)]
        changed = list(args)
        if op == "deposit":
            changed[1] += 1
        elif op == "fund":
            changed[2 if args[2] else 3] += 1
        elif op == "settle":
            changed[3] += 1
        else:
            changed[2] += 1
        self._expect(op, tuple(changed), False, LedgerError)

    @rule(seconds=st.integers(1, 86400))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(dt.timedelta(seconds=seconds))

    @invariant()
    def matches_the_shadow(self) -> None:
        balances = self.ledger.balances()
        assert balances == self.shadow.balances
        assert sum(balances.values()) == 0
        assert all(v >= 0 for k, v in balances.items() if k != "world")
        history = self.ledger.history()
        replayed: dict[str, int] = {}
        for t in history:
            replayed[t.debit] = replayed.get(t.debit, 0) - t.amount
            replayed[t.credit] = replayed.get(t.credit, 0) + t.amount
        assert replayed == balances
        for mission in MISSIONS:
            escrow = f"escrow:{mission}"
            closure = self.ledger.closure(mission)
            closing = [t for t in history if t.mission == mission and t.action != "fund"]
            assert len({(t.action, t.cause) for t in closing}) <= 1
            if closure is None:
                assert mission not in self.shadow.closures and closing == []
                continue
            kind, cause, owner, price, fee, rest = self.shadow.closures[mission]
            assert (closure.kind, closure.cause, closure.provider_owner) == (kind, cause, owner)
            assert (closure.provider, closure.fee, closure.client_refund) == (price, fee, rest)
            assert balances[escrow] == 0
            funded = sum(t.amount for t in history if t.credit == escrow)
            assert funded == closure.total == sum(t.amount for t in closing)
            assert sorted(closure.transfers) == sorted(t.id for t in closing)
            if kind == "settled":
                to_provider = sum(t.amount for t in closing if t.credit == f"provider:{owner}")
                to_fees = sum(t.amount for t in closing if t.credit == "platform:fees")
                assert to_provider + to_fees == price + fee
        assert self.ledger.check() == []


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_closure_type_is_the_settlement_type() -> None:
    assert isinstance(Closure("m1", "settled", "c", "alice", "bob", 1, 0, 0, ("x",), START),
                      Closure)
    assert Transfer.__mro__[1] is TransferSpec


def test_a_chain_replayed_in_part_posts_only_its_new_transfers(ledger: Ledger,
                                                                clock: FixedClock) -> None:
    ledger.deposit("alice", 100, "d1")
    to_bob = spec(tid(1), "client:alice", "provider:bob", 30)
    to_carol = spec(tid(2), "client:alice", "provider:carol", 20)
    to_dave = spec(tid(3), "client:alice", "provider:dave", 10)
    [first] = ledger.post([to_bob])
    clock.advance("PT1M")
    carol, again, dave = ledger.post([to_carol, to_bob, to_dave])
    assert again == first  # the original, its seq and time kept
    assert (carol.seq, dave.seq) == (first.seq + 1, first.seq + 2)
    assert carol.at == dave.at == iso(clock.now())
    assert ledger.history() == [ledger.history()[0], first, carol, dave]  # as stored
    assert ledger.balances() == {"world": -100, "client:alice": 40, "provider:bob": 30,
                                 "provider:carol": 20, "provider:dave": 10}
    assert ledger.check() == []


def test_fund_returns_the_stored_transfers_and_a_closed_mission_takes_no_new_leg(
        ledger: Ledger) -> None:
    ledger.deposit("alice", 500, "d1")
    funded = ledger.fund("m1", "alice", 100, 10, "open-1")
    assert funded == ledger.history()[1:]  # seqs as SQLite gave them
    ledger.settle("m1", "alice", "bob", 100, 10, "merge-1")
    with pytest.raises(LedgerError, match=r"^escrow:m1: mission is already closed;"):
        ledger.fund("m1", "alice", 90, 10, "open-1")  # a leg of the same cause, changed
    assert ledger.fund("m1", "alice", 100, 10, "open-1") == funded  # the replay
    assert len(ledger.history()) == 5
    assert ledger.check() == []
