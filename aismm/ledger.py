"""The escrow ledger: double-entry, integer tokens, immutable transfers with deterministic ids.

The only module that writes ledger SQL. Tables (``ledger_`` prefix, shared ``hub.db``):
``ledger_transfers`` (append-only), ``ledger_balances`` (cache, updated in the same
transaction), ``ledger_closures`` (one row per settled or refunded mission).

Leg names, used as the ``leg`` of :func:`transfer_id` and kept in ``action``:
``deposit`` (world → client; the leg is the client account), ``fund`` legs ``price`` and ``fee`` (client → escrow),
``settle`` legs ``price`` (→ provider), ``fee`` (→ platform:fees), ``remainder`` (→ client),
``refund`` legs ``fee`` (→ platform:fees) and ``refund`` (→ client). Zero-amount legs are skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aismm.clock import Clock, default_clock, iso
from aismm.errors import ConflictError, LedgerError

__all__ = [
    "FEES", "WORLD", "Closure", "Ledger", "Settlement", "Transfer", "TransferSpec", "fee_for",
    "transfer_id",
]

WORLD = "world"
FEES = "platform:fees"
_ACTOR = r"[a-z][a-z0-9-]{1,38}"
_MISSION = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_ACCOUNT = re.compile(rf"^(?:world|platform:fees|(?:client|provider):{_ACTOR}|escrow:{_MISSION})$")
_ACTOR_RE = re.compile(rf"^{_ACTOR}$")
_MISSION_RE = re.compile(rf"^{_MISSION}$")
_ID_RE = re.compile(r"^[0-9a-f]{32,64}$")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_CAUSE_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_ATTEMPTS = 8
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_transfers (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    debit TEXT NOT NULL, credit TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount > 0),
    mission TEXT, action TEXT NOT NULL, cause TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_balances (
    account TEXT PRIMARY KEY, balance INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_closures (
    mission TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('settled', 'refunded')),
    cause TEXT NOT NULL, client TEXT NOT NULL, provider_owner TEXT,
    provider INTEGER NOT NULL, fee INTEGER NOT NULL, client_refund INTEGER NOT NULL,
    transfers TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID;
"""
_COLS = "seq, id, debit, credit, amount, mission, action, cause, at"
_INSERT = (
    "INSERT INTO ledger_transfers (id, debit, credit, amount, mission, action, cause, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_UPSERT = (
    "INSERT INTO ledger_balances (account, balance) VALUES (?, ?) ON CONFLICT (account)"
    " DO UPDATE SET balance = balance + excluded.balance RETURNING balance"
)


def transfer_id(mission: str | None, action: str, cause: str, leg: str = "") -> str:
    """The deterministic id of one transfer: 32 hex chars of sha256 over its parts."""
    body = json.dumps([mission, action, cause, leg], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


def fee_for(price: int, rate_bp: int) -> int:
    """The fee on ``price`` at ``rate_bp`` basis points, rounded half up."""
    _amount("fee_for: price", price, allow_zero=True)
    if isinstance(rate_bp, bool) or not isinstance(rate_bp, int) or not 0 <= rate_bp <= 10000:
        raise LedgerError(f"fee_for: rate {rate_bp!r} is not 0..10000 basis points; pass an int")
    return (price * rate_bp + 5000) // 10000


@dataclass(frozen=True)
class TransferSpec:
    """One transfer to post: ``amount`` tokens leave ``debit`` and arrive at ``credit``."""

    id: str
    debit: str
    credit: str
    amount: int
    mission: str | None
    action: str
    cause: str

    def body(self) -> tuple[str, str, int, str | None, str, str]:
        """Everything but the id: what must match when the id is replayed."""
        return (self.debit, self.credit, self.amount, self.mission, self.action, self.cause)


@dataclass(frozen=True)
class Transfer(TransferSpec):
    """A posted transfer: its insertion order ``seq`` and ISO UTC time ``at``."""

    seq: int
    at: str

    def to_dict(self) -> dict[str, Any]:
        """The transfer as a plain dict in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Closure:
    """How a mission's escrow was closed: who got what, by which transfers."""

    mission: str
    kind: str
    cause: str
    client: str
    provider_owner: str | None
    provider: int
    fee: int
    client_refund: int
    transfers: tuple[str, ...]
    at: str

    @property
    def total(self) -> int:
        """Everything that left the escrow at closure."""
        return self.provider + self.fee + self.client_refund

    def to_dict(self) -> dict[str, Any]:
        """The closure as a plain dict with a stable key order."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["transfers"] = list(self.transfers)
        return data


Settlement = Closure  # what settle() and refund() return: the mission's closure record


def _amount(where: str, value: object, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LedgerError(f"{where}: amount {value!r} is not an integer; use whole tokens")
    if value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "more than zero"
        raise LedgerError(f"{where}: amount {value} is not allowed; pass {need} tokens")
    return value


def _check_name(kind: str, value: object, pattern: re.Pattern[str], hint: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise LedgerError(f"{kind} {value!r}: not a valid name; {hint}")
    return value


def _account(value: object) -> str:
    hint = "use world, platform:fees, client:<actor>, provider:<owner> or escrow:<mission>"
    return _check_name("account", value, _ACCOUNT, hint)


def _actor(value: object) -> str:
    return _check_name("actor", value, _ACTOR_RE, "use ^[a-z][a-z0-9-]{1,38}$")


def _mission(value: object) -> str:
    return _check_name("mission", value, _MISSION_RE, "use letters, digits, '.', '_', '-'")


def _cause(value: object) -> str:
    return _check_name("cause", value, _CAUSE_RE, "give 1-256 printable characters")


def _validate(spec: TransferSpec) -> None:
    where = f"transfer {spec.id!r}"
    if not isinstance(spec.id, str) or not _ID_RE.match(spec.id):
        raise LedgerError(f"{where}: id is not 32-64 lowercase hex; derive it with transfer_id()")
    _account(spec.debit)
    _account(spec.credit)
    if spec.debit == spec.credit:
        raise LedgerError(f"{where}: debit and credit are both {spec.debit}; use two accounts")
    _amount(where, spec.amount)
    if spec.mission is not None:
        _mission(spec.mission)
    _check_name("action", spec.action, _ACTION_RE, "use ^[a-z][a-z0-9_.-]{0,63}$")
    _cause(spec.cause)


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """The ledger tables in one SQLite file; one connection per instance."""

    def __init__(self, db_path: Path, clock: Clock | None = None) -> None:
        self._path = Path(db_path)
        self._clock = clock or default_clock()
        self._batch = False
        try:
            self._conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL").fetchall())
            self._conn.execute("PRAGMA synchronous = FULL")
            self._write(self._create)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{self._path}: cannot open the ledger database ({exc}); "
                "check the path and that it is a SQLite file"
            ) from exc

    def _create(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], _T]) -> _T:
        for attempt in range(_ATTEMPTS):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if not _locked(exc):
                    raise
                if attempt == _ATTEMPTS - 1:
                    raise ConflictError(
                        f"{self._path}: the ledger stayed locked by another writer; retry later"
                    ) from exc
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` atomically: its own BEGIN IMMEDIATE, or a SAVEPOINT inside a batch."""
        conn = self._conn
        if self._batch:
            conn.execute("SAVEPOINT chain")
            try:
                result = fn()
            except BaseException:
                conn.execute("ROLLBACK TO chain")
                conn.execute("RELEASE chain")
                raise
            conn.execute("RELEASE chain")
            return result

        def once() -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._retry(once)

    @contextmanager
    def batch(self) -> Iterator[Ledger]:
        """One transaction for many operations; each still all-or-nothing (SAVEPOINT).

        An operation that raises inside the block is undone alone; an exception that
        leaves the block rolls back the whole batch.
        """
        if self._batch:
            yield self
            return
        self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        self._batch = True
        try:
            yield self
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._batch = False

    # -- transfers ----------------------------------------------------------------------------

    def post(self, specs: list[TransferSpec]) -> list[Transfer]:
        """Post one chain of transfers atomically; replays of identical transfers are no-ops."""
        for spec in specs:
            _validate(spec)
        return self._write(lambda: self._post(specs))

    def post_many(self, chains: list[list[TransferSpec]]) -> list[list[Transfer] | LedgerError]:
        """Post many chains in one transaction; each result is the chain's transfers or its error."""
        results: list[list[Transfer] | LedgerError] = []
        with self.batch():
            for chain in chains:
                try:
                    results.append(self.post(chain))
                except LedgerError as exc:
                    results.append(exc)
        return results

    def _post(self, specs: list[TransferSpec]) -> list[Transfer]:
        conn, now = self._conn, iso(self._clock.now())
        out: list[Transfer] = []
        deltas: dict[str, int] = {}
        for s in specs:
            cur = conn.execute(_INSERT, (s.id, *s.body(), now))
            if cur.rowcount == 1:
                out.append(Transfer(*(s.id, *s.body()), seq=int(cur.lastrowid or 0), at=now))
                deltas[s.debit] = deltas.get(s.debit, 0) - s.amount
                deltas[s.credit] = deltas.get(s.credit, 0) + s.amount
                continue
            old = self._transfer(s.id)
            if old.body() != s.body():
                raise LedgerError(
                    f"transfer {s.id}: was already posted with a different body "
                    f"({old.debit} -> {old.credit} {old.amount}, {old.action}, {old.cause}); "
                    "derive a new id for a new transfer or replay the original exactly"
                )
            out.append(old)
        for account, delta in deltas.items():
            if delta == 0:
                continue
            (after,) = conn.execute(_UPSERT, (account, delta)).fetchall()[0]
            if after < 0 and account != WORLD:
                raise LedgerError(
                    f"{account}: insufficient funds: balance {after - delta}, the chain takes "
                    f"{-delta}, short by {-after}; deposit at least {-after} more or lower the amount"
                )
        return out

    def _transfer(self, tid: str) -> Transfer:
        row = self._conn.execute(f"SELECT {_COLS} FROM ledger_transfers WHERE id = ?", (tid,))
        return _row_transfer(row.fetchone())

    def balance(self, account: str) -> int:
        """The balance of one account (0 if it never moved)."""
        row = self._conn.execute(
            "SELECT balance FROM ledger_balances WHERE account = ?", (_account(account),)
        ).fetchone()
        return int(row[0]) if row else 0

    def balances(self) -> dict[str, int]:
        """Every account that has a transfer, with its balance."""
        rows = self._conn.execute("SELECT account, balance FROM ledger_balances ORDER BY account")
        return {a: int(b) for a, b in rows}

    def history(self, account: str | None = None) -> list[Transfer]:
        """Every transfer in posting order, or only those touching ``account``."""
        sql, args = f"SELECT {_COLS} FROM ledger_transfers", tuple[str, ...]()
        if account is not None:  # no index: an account's history is a rare, audit-time read
            sql, args = sql + " WHERE debit = ? OR credit = ?", (_account(account),) * 2
        return [_row_transfer(r) for r in self._conn.execute(sql + " ORDER BY seq", args)]

    # -- mission operations -------------------------------------------------------------------

    def deposit(self, actor: str, amount: int, cause: str) -> list[Transfer]:
        """Issue ``amount`` new tokens to ``client:<actor>``."""
        acct = f"client:{_actor(actor)}"
        tid = transfer_id(None, "deposit", _cause(cause), acct)
        return self.post([TransferSpec(tid, WORLD, acct, amount, None, "deposit", cause)])

    def fund(self, mission: str, client: str, price: int, fee: int, cause: str) -> list[Transfer]:
        """Move ``price`` and ``fee`` (two legs) from ``client:<client>`` into the escrow."""
        escrow, payer = f"escrow:{_mission(mission)}", f"client:{_actor(client)}"
        _amount(f"{escrow}: price", price, allow_zero=True)
        _amount(f"{escrow}: fee", fee, allow_zero=True)
        if price + fee == 0:
            raise LedgerError(f"{escrow}: price and fee are both 0; fund at least one token")
        specs = [
            TransferSpec(transfer_id(mission, "fund", cause, leg), payer, escrow, amt,
                         mission, "fund", cause)
            for leg, amt in (("price", price), ("fee", fee)) if amt > 0
        ]
        for spec in specs:
            _validate(spec)

        def run() -> list[Transfer]:
            if self._closure(mission) is not None and not self._all_posted(specs):
                raise LedgerError(f"{escrow}: mission is already closed; open a new mission")
            return self._post(specs)

        return self._write(run)

    def settle(
        self, mission: str, client: str, provider_owner: str, price: int, fee: int, cause: str
    ) -> Settlement:
        """Pay the provider the price and the platform the fee; return the rest to the client."""
        _actor(provider_owner)
        _amount(f"escrow:{mission}: price", price, allow_zero=True)
        _amount(f"escrow:{mission}: fee", fee, allow_zero=True)
        plan = [("price", f"provider:{provider_owner}", price), ("fee", FEES, fee)]
        return self._close(mission, "settled", client, provider_owner, plan, cause)

    def refund(self, mission: str, client: str, fee_to_platform: int, cause: str) -> Settlement:
        """Return the escrow to the client, except ``fee_to_platform`` for the platform."""
        _amount(f"escrow:{mission}: fee", fee_to_platform, allow_zero=True)
        return self._close(mission, "refunded", client, None, [("fee", FEES, fee_to_platform)],
                           cause)

    def closure(self, mission: str) -> Closure | None:
        """How the mission was closed, or None while its escrow is open."""
        return self._closure(_mission(mission))

    def _close(
        self, mission: str, kind: str, client: str, owner: str | None,
        plan: list[tuple[str, str, int]], cause: str,
    ) -> Settlement:
        escrow, payee = f"escrow:{_mission(mission)}", f"client:{_actor(client)}"
        _cause(cause)
        action = "settle" if kind == "settled" else "refund"

        def run() -> Settlement:
            old = self._closure(mission)
            if old is not None:
                return self._replay(old, kind, cause, client, owner, plan)
            held = self.balance(escrow)
            if held == 0:
                raise LedgerError(f"{escrow}: mission is not funded; fund it before closing it")
            wanted = sum(amt for _, _, amt in plan)
            if wanted > held:
                raise LedgerError(
                    f"{escrow}: insufficient funds: balance {held}, {kind} takes {wanted}, "
                    f"short by {wanted - held}; fund the escrow or lower the amounts"
                )
            rest_leg = "remainder" if kind == "settled" else "refund"
            legs = [*plan, (rest_leg, payee, held - wanted)]
            specs = [
                TransferSpec(transfer_id(mission, action, cause, leg), escrow, credit, amt,
                             mission, action, cause)
                for leg, credit, amt in legs if amt > 0
            ]
            posted = self._post(specs)
            amounts = {leg: amt for leg, _, amt in legs}
            done = Closure(mission, kind, cause, client, owner, amounts.get("price", 0),
                           amounts["fee"], held - wanted, tuple(t.id for t in posted),
                           iso(self._clock.now()))
            self._conn.execute(
                "INSERT INTO ledger_closures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _closure_row(done),
            )
            return done

        return self._write(run)

    def _replay(
        self, old: Closure, kind: str, cause: str, client: str, owner: str | None,
        plan: list[tuple[str, str, int]],
    ) -> Closure:
        escrow = f"escrow:{old.mission}"
        if old.kind != kind or old.cause != cause:
            raise ConflictError(
                f"{escrow}: already {old.kind} by {old.cause}; re-read the mission, "
                "its escrow is closed"
            )
        amounts = {leg: amt for leg, _, amt in plan}
        if (old.client, old.provider_owner, old.fee) != (client, owner, amounts["fee"]) or (
            kind == "settled" and old.provider != amounts["price"]
        ):
            raise LedgerError(
                f"{escrow}: {kind} by {cause} was already posted with a different body; "
                "replay it with the original client, provider and amounts"
            )
        return old

    def _closure(self, mission: str) -> Closure | None:
        row = self._conn.execute(
            "SELECT * FROM ledger_closures WHERE mission = ?", (mission,)
        ).fetchone()
        return None if row is None else _row_closure(row)

    def _all_posted(self, specs: list[TransferSpec]) -> bool:
        for spec in specs:
            row = self._conn.execute(f"SELECT {_COLS} FROM ledger_transfers WHERE id = ?",
                                     (spec.id,)).fetchone()
            if row is None or _row_transfer(row).body() != spec.body():
                return False
        return True

    # -- invariants ---------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every invariant violation as one line; [] when the ledger is sound."""
        conn, out = self._conn, []
        credits = dict(conn.execute(
            "SELECT credit, SUM(amount) FROM ledger_transfers GROUP BY credit").fetchall())
        debits = dict(conn.execute(
            "SELECT debit, SUM(amount) FROM ledger_transfers GROUP BY debit").fetchall())
        cached = self.balances()
        if sum(cached.values()) != 0:
            out.append(f"ledger: balances sum to {sum(cached.values())}, not 0")
        for acct in sorted(set(credits) | set(debits) | set(cached)):
            replayed = credits.get(acct, 0) - debits.get(acct, 0)
            if cached.get(acct, 0) != replayed:
                out.append(f"{acct}: cached balance {cached.get(acct, 0)} != replayed {replayed}")
            if acct != WORLD and replayed < 0:
                out.append(f"{acct}: balance {replayed} is below zero")
        closing = {m: (int(total), sorted(ids.split(","))) for m, total, ids in conn.execute(
            "SELECT mission, SUM(amount), group_concat(id) FROM ledger_transfers"
            " WHERE action IN ('settle', 'refund') AND mission IS NOT NULL GROUP BY mission")}
        closures = {c.mission: c for c in map(_row_closure, conn.execute(
            "SELECT * FROM ledger_closures"))}
        for mission in sorted(set(closing) - set(closures)):
            out.append(f"escrow:{mission}: has closing transfers but no closure")
        for mission, c in sorted(closures.items()):
            escrow = f"escrow:{mission}"
            held = credits.get(escrow, 0) - debits.get(escrow, 0)
            paid, ids = closing.get(mission, (0, []))
            if held != 0:
                out.append(f"{escrow}: {c.kind} but holds {held}")
            if sorted(c.transfers) != ids:
                out.append(f"{escrow}: closure lists {len(c.transfers)} transfers, "
                           f"the ledger has {len(ids)} closing transfers")
            funded = credits.get(escrow, 0) - (debits.get(escrow, 0) - paid)
            if not funded == paid == c.total:
                out.append(f"{escrow}: funded {funded} != paid out + refunded {c.total} "
                           f"(closing transfers {paid})")
        return out


def _row_closure(row: tuple[Any, ...]) -> Closure:
    mission, kind, cause, client, owner, provider, fee, refund, transfers, at = row
    return Closure(mission, kind, cause, client, owner, int(provider), int(fee), int(refund),
                   tuple(transfers.split()), at)


def _row_transfer(row: tuple[Any, ...]) -> Transfer:
    seq, tid, debit, credit, amount, mission, action, cause, at = row
    return Transfer(tid, debit, credit, int(amount), mission, action, cause, int(seq), at)


def _closure_row(c: Closure) -> tuple[Any, ...]:
    return (c.mission, c.kind, c.cause, c.client, c.provider_owner, c.provider, c.fee,
            c.client_refund, " ".join(c.transfers), c.at)
