"""The escrow ledger: double-entry, integer tokens, immutable transfers with deterministic ids.

The only module that writes ledger SQL. Tables in the hub's SQLite file: ``ledger_transfers``
(append-only), ``ledger_balances`` (a cache updated in the same transaction) and
``ledger_closures`` (one row per settled or refunded mission).

Transfer ids are ``transfer_id(mission, action, cause, leg)``; the actions and their legs:
``deposit`` (world → client; leg = the client account), ``fund`` legs ``price`` and ``fee``
(client → escrow), ``settle`` legs ``price`` (→ provider), ``fee`` (→ platform:fees) and
``remainder`` (→ client), ``refund`` legs ``fee`` (→ platform:fees) and ``refund`` (→ client).
Legs of zero tokens are not posted.

Money limits (``docs/protocol.md``): an amount a caller gives (deposit, price, fee, any
transfer passed to :meth:`Ledger.post`) is 1..``MAX_AMOUNT`` (10^15) tokens; every balance,
``world`` included (so at most 10^18 tokens are ever issued), and every transfer the ledger
derives itself (a closure's remainder or refund) stays within ±``MAX_BALANCE`` (10^18). Both
are far below 2^63, so SQLite's 64-bit integers never overflow (past 2^63 SQLite silently
switches to floating point); the tables refuse anything else with CHECK constraints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Self, TypeVar

from aismm.core.clock import Clock, default_clock, iso
from aismm.core.errors import ConflictError, LedgerError
from aismm.core.money import MAX_AMOUNT, MAX_BALANCE
from aismm.infra.store import GroupCommit, group_for

__all__ = [
    "FEES",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "WORLD",
    "Closure",
    "Ledger",
    "Settlement",
    "Transfer",
    "TransferSpec",
    "check_amount",
    "fee_for",
    "transfer_id",
]

WORLD = "world"
FEES = "platform:fees"
_ACTOR = r"[a-z][a-z0-9-]{1,38}"
_MISSION = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAMES = {kind: (re.compile(f"^(?:{pattern})$"), hint) for kind, pattern, hint in [
    ("account", rf"world|platform:fees|(?:client|provider):{_ACTOR}|escrow:{_MISSION}",
     "use world, platform:fees, client:<actor>, provider:<owner> or escrow:<mission>"),
    ("actor", _ACTOR, "use ^[a-z][a-z0-9-]{1,38}$"),
    ("mission", _MISSION, "use 1-128 letters, digits, '.', '_' or '-'"),
    ("action", r"[a-z][a-z0-9_.-]{0,63}", "use ^[a-z][a-z0-9_.-]{0,63}$"),
    ("cause", r"[^\x00-\x1f\x7f]{1,256}", "give 1-256 printable characters"),
    ("id", r"[0-9a-f]{32,64}", "use 32-64 lowercase hex; derive it with transfer_id()"),
]}
_ATTEMPTS = 4  # on top of SQLite's own 10 s busy wait
_T = TypeVar("_T")


def _tokens(column: str, low: int) -> str:
    """A strict integer column: SQLite stores only integers in [low, MAX_BALANCE] there."""
    return (f"{column} INTEGER NOT NULL CHECK (typeof({column}) = 'integer' AND "
            f"{column} BETWEEN {low} AND {MAX_BALANCE})")


_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS ledger_transfers (
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, debit TEXT NOT NULL,
        credit TEXT NOT NULL, {_tokens("amount", 1)}, mission TEXT,
        action TEXT NOT NULL, cause TEXT NOT NULL, at TEXT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS ledger_balances (
        account TEXT PRIMARY KEY, {_tokens("balance", -MAX_BALANCE)}) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS ledger_closures (
        mission TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('settled', 'refunded')),
        cause TEXT NOT NULL, client TEXT NOT NULL, provider_owner TEXT,
        {_tokens("provider", 0)}, {_tokens("fee", 0)}, {_tokens("client_refund", 0)},
        transfers TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID""",
]
_TABLES = {"ledger_transfers", "ledger_balances", "ledger_closures"}
_SELECT = "SELECT seq, id, debit, credit, amount, mission, action, cause, at FROM ledger_transfers"


def transfer_id(mission: str | None, action: str, cause: str, leg: str = "") -> str:
    """The deterministic id of one transfer: 32 hex chars of sha256 over its parts."""
    head = "~" if mission is None else f"{len(mission)}:{mission}"  # length-prefixed parts
    text = f"{head}{len(action)}:{action}{len(cause)}:{cause}{len(leg)}:{leg}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


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
        """Everything but the id: what a replay of the id must repeat exactly."""
        return (self.debit, self.credit, self.amount, self.mission, self.action, self.cause)


@dataclass(frozen=True)
class Transfer(TransferSpec):
    """A posted transfer, with its insertion order ``seq`` and ISO UTC time ``at``."""

    seq: int
    at: str

    def to_dict(self) -> dict[str, Any]:
        """The transfer as a dict in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Closure:
    """How a mission's escrow was closed (``settled`` or ``refunded``): who got what, and how."""

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
        """The closure as a dict with a stable key order."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["transfers"] = list(self.transfers)
        return data


Settlement = Closure  # what settle() and refund() return: the mission's closure record


def check_amount(where: str, value: object, allow_zero: bool = False) -> int:
    """``value`` as an amount a caller may give (0 or 1 .. MAX_AMOUNT tokens), else LedgerError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LedgerError(f"{where}: amount {value!r} is not an integer; use whole tokens")
    if value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "more than zero"
        raise LedgerError(f"{where}: amount {value} is not allowed; pass {need} tokens")
    if value > MAX_AMOUNT:
        raise LedgerError(f"{where}: amount {value} is above the limit of {MAX_AMOUNT} tokens; "
                          f"pass at most {MAX_AMOUNT} (see Money limits in docs/protocol.md)")
    return value


_amount = check_amount


def _name(kind: str, value: object) -> str:
    pattern, hint = _NAMES[kind]
    if not isinstance(value, str) or not pattern.match(value):
        raise LedgerError(f"{kind} {value!r}: not a valid {kind}; {hint}")
    return value


def _validate(spec: TransferSpec) -> None:
    _name("id", spec.id)
    if _name("account", spec.debit) == _name("account", spec.credit):
        raise LedgerError(f"transfer {spec.id}: debit and credit are both {spec.debit}; "
                          "move tokens between two different accounts")
    _amount(f"transfer {spec.id}", spec.amount)
    if spec.mission is not None:
        _name("mission", spec.mission)
    _name("action", spec.action)
    _name("cause", spec.cause)


def _legs(where: str, cause: str, legs: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    _name("cause", cause)
    return [(leg, acct, amount) for leg, acct, amount in legs
            if _amount(f"{where}: {leg}", amount, allow_zero=True)]


@lru_cache(maxsize=64)
def _rows(n: int, width: int) -> str:
    return ", ".join(["(" + ", ".join(["?"] * width) + ")"] * n)


@lru_cache(maxsize=64)
def _insert_sql(n: int, guarded: bool) -> str:
    """INSERT of ``n`` transfers, those whose id is new (in order: new rows take consecutive
    seqs); ``guarded``: none of them once the mission given as the last parameter has a
    closure (one statement, no separate read). No RETURNING: the cursor's row count and last
    row id tell what was added (RETURNING doubles the statement's cost)."""
    cols = "INSERT INTO ledger_transfers (id, debit, credit, amount, mission, action, cause, at)"
    if guarded:
        return (f"{cols} SELECT * FROM (VALUES {_rows(n, 8)}) WHERE NOT EXISTS "
                "(SELECT 1 FROM ledger_closures WHERE mission = ?) ON CONFLICT (id) DO NOTHING")
    return f"{cols} VALUES {_rows(n, 8)} ON CONFLICT (id) DO NOTHING"


@lru_cache(maxsize=64)
def _balances_sql(n: int) -> str:
    return (f"INSERT INTO ledger_balances (account, balance) VALUES {_rows(n, 2)} "
            "ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance "
            "RETURNING account, balance")


# A mission's closure row, written only while it has none and its escrow holds at least what
# the closure pays out (and more than 0); returns the remainder. ?1..?7: mission, kind, cause,
# client, provider owner, provider, fee; ?8: provider + fee; ?9 / ?10: the transfer ids with /
# without the remainder leg; ?11: at; ?12: the escrow account.
_CLOSE_SQL = (
    "INSERT INTO ledger_closures (mission, kind, cause, client, provider_owner, provider, fee, "
    "client_refund, transfers, at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, held - ?8, "
    "CASE WHEN held > ?8 THEN ?9 ELSE ?10 END, ?11 "
    "FROM (SELECT balance AS held FROM ledger_balances WHERE account = ?12) "
    "WHERE held > 0 AND held >= ?8 ON CONFLICT (mission) DO NOTHING RETURNING client_refund")


class Ledger:
    """The ledger tables of one SQLite file, through one connection.

    Reads use the ledger's own connection. Writes do too, unless this process runs a group
    writer for the file (:func:`aismm.infra.store.group_commit`, as ``aismm serve`` does):
    then each write is one job of the writer's next group commit, and returns once that commit
    is durable. A :meth:`batch` always writes on the ledger's own connection.
    """

    def __init__(self, db_path: Path, clock: Clock | None = None) -> None:
        self._path = Path(db_path)
        self._clock = clock or default_clock()
        self._batch = False
        self._stamp: tuple[dt.datetime | None, str] = (None, "")
        self._group: GroupCommit | None = group_for(self._path)
        self._on: Ledger | None = None  # the view on the group writer's connection
        try:
            self._conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL").fetchall())
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA cache_size = -65536")
            have = {n for (n,) in self._conn.execute("SELECT name FROM sqlite_master")}
            if not have >= _TABLES:  # a ready file takes no write lock to open
                self._retry(lambda: self._own_tx(
                    lambda: [self._conn.execute(sql) for sql in _SCHEMA]))
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self._path}: cannot open the ledger database ({exc}); "
                              "check the path and that it is a SQLite file") from exc

    @classmethod
    def _over(cls, conn: sqlite3.Connection, path: Path, clock: Clock) -> Ledger:
        """A view of the ledger on the group writer's connection, inside its transaction."""
        view = cls.__new__(cls)
        view._path, view._clock, view._conn = path, clock, conn
        view._batch, view._group, view._stamp, view._on = True, None, (None, ""), None
        return view

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _now(self) -> str:
        moment = self._clock.now()
        if moment != self._stamp[0]:
            self._stamp = (moment, iso(moment))
        return self._stamp[1]

    # -- transactions -------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], _T]) -> _T:
        for attempt in range(_ATTEMPTS):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == _ATTEMPTS - 1:
                    raise ConflictError(f"{self._path}: the ledger stayed locked by another "
                                        "writer; retry later") from exc
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, fn: Callable[[Ledger], _T]) -> _T:
        """Run ``fn(ledger)`` all-or-nothing: a SAVEPOINT in a batch, a job of the group
        writer, or its own BEGIN IMMEDIATE."""
        if self._batch:
            return self._own_tx(lambda: fn(self))
        group = self._group
        if group is not None:
            return group.run(lambda conn: fn(self._view(conn)))
        return self._retry(lambda: self._own_tx(lambda: fn(self)))

    def _view(self, conn: sqlite3.Connection) -> Ledger:
        """This ledger's view on the group writer's connection (made once, then reused)."""
        view = self._on
        if view is None or view._conn is not conn:
            view = self._on = Ledger._over(conn, self._path, self._clock)
        return view

    def _own_tx(self, fn: Callable[[], _T]) -> _T:
        conn = self._conn
        begin, commit, undo = (
            ("SAVEPOINT op", "RELEASE op", ("ROLLBACK TO op", "RELEASE op")) if self._batch
            else ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",))
        )
        conn.execute(begin)
        try:
            result = fn()
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (I/O, full disk)
                for sql in undo:
                    conn.execute(sql)
            raise
        conn.execute(commit)
        return result

    @contextmanager
    def batch(self) -> Iterator[Self]:
        """One transaction for many operations; a failing one is undone alone (SAVEPOINT)."""
        if self._batch:
            yield self
            return
        self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        self._batch = True
        try:
            yield self
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._batch = False

    # -- transfers ----------------------------------------------------------------------------

    def post(self, specs: list[TransferSpec]) -> list[Transfer]:
        """Post one chain of transfers atomically; replaying identical transfers is a no-op."""
        for spec in specs:
            _validate(spec)
        return self._write(lambda led: led._chain(specs))

    def post_many(self, chains: list[list[TransferSpec]]) -> list[list[Transfer] | LedgerError]:
        """Post many chains in one transaction; each result is a chain's transfers or its error."""
        results: list[list[Transfer] | LedgerError] = []
        with self.batch():
            for chain in chains:
                try:
                    results.append(self.post(chain))
                except LedgerError as exc:
                    results.append(exc)
        return results

    def _post(self, specs: list[TransferSpec], guard: str | None = None,
              keep: bool = True) -> list[Transfer] | None:
        """Insert the chain, move the balances; with ``guard`` (a mission), nothing at all once
        that mission has a closure: then None. ``keep=False``: return [] instead of the
        transfers (a caller that only needs them posted)."""
        unique = {spec.id: spec for spec in specs}
        if len(unique) < len(specs):  # an id twice in the chain: both must say the same
            unique = {}
            for spec in specs:
                _same(unique.setdefault(spec.id, spec), spec)
        if not unique:
            return []
        now, conn = self._now(), self._conn
        values: list[Any] = [v for s in unique.values() for v in (s.id, *s.body(), now)]
        if guard is not None:
            values.append(guard)
        n = len(unique)
        cur = conn.execute(_insert_sql(n, guard is not None), values)
        added, last = cur.rowcount, cur.lastrowid
        done: dict[str, Transfer] = {}
        if added == n and last is not None:  # all new: their seqs follow one another, in order
            seqs = dict(zip(unique, range(last - n + 1, last + 1), strict=True))
        else:  # a replay (of part) of the chain, or refused by the guard
            if guard is not None and added == 0 and self._closure(guard) is not None:
                return None
            first = (last or 0) - added + 1  # the rows added now: seqs first..last
            done = {t.id: t for t in self._transfers(list(unique))}
            seqs = {tid: t.seq for tid, t in done.items() if added > 0 and t.seq >= first}
        deltas: dict[str, int] = {}
        for tid, spec in unique.items():
            if tid in seqs:
                if keep:
                    done[tid] = Transfer(tid, *spec.body(), seq=seqs[tid], at=now)
                deltas[spec.debit] = deltas.get(spec.debit, 0) - spec.amount
                deltas[spec.credit] = deltas.get(spec.credit, 0) + spec.amount
            else:
                _same(done[tid], spec)
        moved = [(a, d) for a, d in deltas.items() if d]
        if moved:
            for account, delta in moved:
                if abs(delta) > MAX_BALANCE:  # too large to add in 64 bits safely
                    raise _beyond(account, self.balance(account) + delta)
            try:
                after = dict(conn.execute(_balances_sql(len(moved)),
                                          [v for pair in moved for v in pair]).fetchall())
            except sqlite3.IntegrityError:  # a CHECK: some balance would pass MAX_BALANCE
                beyond = next((_beyond(a, self.balance(a) + d) for a, d in moved
                               if abs(self.balance(a) + d) > MAX_BALANCE), None)
                if beyond is None:
                    raise
                raise beyond from None
            for account, delta in moved:
                if abs(after[account]) > MAX_BALANCE:  # a ledger made before the CHECKs
                    raise _beyond(account, after[account])
                if after[account] < 0 and account != WORLD:
                    short = -after[account]
                    raise LedgerError(
                        f"{account}: insufficient funds: balance {after[account] - delta}, the "
                        f"chain takes {-delta}, short by {short}; deposit at least {short} more "
                        "or lower the amount")
        return [done[s.id] for s in specs] if keep else []

    def _chain(self, specs: list[TransferSpec]) -> list[Transfer]:
        posted = self._post(specs)
        if posted is None:  # pragma: no cover - only a guard refuses
            raise AssertionError("unreachable")
        return posted

    def _transfers(self, ids: list[str]) -> list[Transfer]:
        if not ids:
            return []
        sql = f"{_SELECT} WHERE id IN ({', '.join('?' * len(ids))})"
        return [_row_transfer(r) for r in self._conn.execute(sql, ids)]

    def balance(self, account: str) -> int:
        """The balance of one account (0 if it never moved)."""
        row = self._conn.execute("SELECT balance FROM ledger_balances WHERE account = ?",
                                 (_name("account", account),)).fetchone()
        return int(row[0]) if row else 0

    def balances(self) -> dict[str, int]:
        """Every account that has a transfer, with its balance."""
        rows = self._conn.execute("SELECT account, balance FROM ledger_balances ORDER BY account")
        return {a: int(b) for a, b in rows}

    def history(self, account: str | None = None) -> list[Transfer]:
        """Every transfer in posting order, or those touching ``account`` (a full scan)."""
        where, args = ("", ()) if account is None else (
            " WHERE debit = ? OR credit = ?", (_name("account", account),) * 2)
        rows = self._conn.execute(f"{_SELECT}{where} ORDER BY seq", args)
        return [_row_transfer(r) for r in rows]

    # -- mission operations -------------------------------------------------------------------

    def deposit(self, actor: str, amount: int, cause: str) -> list[Transfer]:
        """Issue ``amount`` new tokens from ``world`` to ``client:<actor>``; once per ``cause``
        (repeating it with the same amount returns the original transfer)."""
        acct = f"client:{_name('actor', actor)}"
        tid = transfer_id(None, "deposit", cause, acct)
        return self.post([TransferSpec(tid, WORLD, acct, amount, None, "deposit", cause)])

    def find_deposit(self, actor: str, cause: str) -> Transfer | None:
        """The deposit posted to ``client:<actor>`` for ``cause``, if any."""
        acct = f"client:{_name('actor', actor)}"
        found = self._transfers([transfer_id(None, "deposit", _name("cause", cause), acct)])
        return found[0] if found else None

    def fund(self, mission: str, client: str, price: int, fee: int, cause: str) -> list[Transfer]:
        """Move ``price`` and ``fee`` (two legs) from ``client:<client>`` into the escrow."""
        return self._fund(mission, f"client:{_name('actor', client)}", mission, price, fee, cause,
                          "mission is already closed; open a new mission")

    def fund_child(self, mission: str, parent: str, price: int, fee: int, cause: str
                   ) -> list[Transfer]:
        """Fund a workflow's child escrow from its parent's escrow (legs ``price`` and ``fee``,
        action ``fund``, debit ``escrow:<parent>``); once per ``cause``."""
        return self._fund(mission, f"escrow:{_name('mission', parent)}", parent, price, fee,
                          cause, "the parent mission is closed; it funds no more children")

    def _fund(self, mission: str, payer: str, closing: str, price: int, fee: int, cause: str,
              closed: str) -> list[Transfer]:
        """The two funding legs of ``mission`` from ``payer``, once per ``cause``; refused with
        ``closed`` once ``closing`` (the mission, or the parent paying) is closed."""
        escrow = f"escrow:{_name('mission', mission)}"
        legs = _legs(escrow, cause, [("price", escrow, price), ("fee", escrow, fee)])
        if not legs:
            raise LedgerError(f"{escrow}: price and fee are both 0; fund at least one token")
        specs = [TransferSpec(transfer_id(mission, "fund", cause, leg), payer, credit, amount,
                              mission, "fund", cause) for leg, credit, amount in legs]

        def run(led: Ledger) -> list[Transfer]:
            posted = led._post(specs, guard=closing)  # refused at once if closing is closed
            if posted is not None:
                return posted
            old = {t.id: t.body() for t in led._transfers([s.id for s in specs])}
            if any(old.get(s.id) != s.body() for s in specs):
                raise LedgerError(f"{escrow if closing == mission else payer}: {closed}")
            return led._chain(specs)  # a replay of the funding: the original transfers

        return self._write(run)

    def refund_child(self, mission: str, client: str, parent: str, fee_to_platform: int,
                     cause: str) -> Settlement:
        """Close a workflow child's escrow back into its parent's (``fee_to_platform`` kept)."""
        return self._close(mission, "refunded", client, None, 0, fee_to_platform, cause,
                           payee=f"escrow:{_name('mission', parent)}")

    def settle_child(self, mission: str, client: str, parent: str, provider_owner: str,
                     price: int, fee: int, cause: str) -> Settlement:
        """Pay an accepted workflow child; any remainder goes back to the parent's escrow."""
        return self._close(mission, "settled", client, _name("actor", provider_owner), price,
                           fee, cause, payee=f"escrow:{_name('mission', parent)}")

    def guarantee(self, mission: str, client: str, amount: int, cause: str) -> list[Transfer]:
        """The platform's T2 guarantee on a failed workflow: ``platform:fees`` pays the client
        what the parent's children were paid (action ``guarantee``); once per ``cause``."""
        acct = f"client:{_name('actor', client)}"
        tid = transfer_id(mission, "guarantee", cause, acct)
        return self.post([TransferSpec(tid, FEES, acct, amount, mission, "guarantee", cause)])

    def children(self, parent: str) -> list[str]:
        """The workflow children the parent's escrow funded, in funding order."""
        rows = self._conn.execute(
            "SELECT mission, MIN(seq) FROM ledger_transfers WHERE debit = ? AND action = 'fund'"
            " GROUP BY mission ORDER BY MIN(seq)", (f"escrow:{_name('mission', parent)}",))
        return [str(m) for m, _seq in rows]

    def settle(
        self, mission: str, client: str, provider_owner: str, price: int, fee: int, cause: str
    ) -> Settlement:
        """Pay the provider the price and the platform the fee; return the rest to the client."""
        return self._close(mission, "settled", client, _name("actor", provider_owner), price, fee,
                           cause)

    def refund(self, mission: str, client: str, fee_to_platform: int, cause: str) -> Settlement:
        """Return the escrow to the client, except ``fee_to_platform`` for the platform."""
        return self._close(mission, "refunded", client, None, 0, fee_to_platform, cause)

    def closure(self, mission: str) -> Closure | None:
        """How the mission's escrow was closed, or None while it is open."""
        return self._closure(_name("mission", mission))

    def _closure(self, mission: str) -> Closure | None:
        row = self._conn.execute("SELECT * FROM ledger_closures WHERE mission = ?",
                                 (mission,)).fetchone()
        return None if row is None else _row_closure(row)

    def _closure_and_balance(self, mission: str, escrow: str) -> tuple[Closure | None, int]:
        """The mission's closure (or None) and its escrow balance, in one statement."""
        row = self._conn.execute(
            "SELECT coalesce((SELECT balance FROM ledger_balances WHERE account = ?), 0), c.* "
            "FROM (SELECT 1) LEFT JOIN ledger_closures AS c ON c.mission = ?",
            (escrow, mission)).fetchone()
        return (None if row[1] is None else _row_closure(row[1:])), int(row[0])

    def _close(self, mission: str, kind: str, client: str, owner: str | None, price: int,
               fee: int, cause: str, payee: str | None = None) -> Settlement:
        escrow = f"escrow:{_name('mission', mission)}"
        payee = payee or f"client:{_name('actor', client)}"
        action, rest = ("settle", "remainder") if kind == "settled" else ("refund", "refund")
        plan = _legs(escrow, cause, [("price", f"provider:{owner}", price), ("fee", FEES, fee)])
        ids = {leg: transfer_id(mission, action, cause, leg) for leg in (*(p[0] for p in plan),
                                                                          rest)}
        without = " ".join(ids[leg] for leg, _acct, _amount in plan)
        fast = (mission, kind, cause, client, owner, price, fee, price + fee,
                f"{without} {ids[rest]}".lstrip(), without)

        def run(led: Ledger) -> Settlement:
            now = led._now()
            row = led._conn.execute(_CLOSE_SQL, (*fast, now, escrow)).fetchone()
            if row is not None:  # closed now (one statement): post what it pays out
                left = int(row[0])
                legs = [*plan, (rest, payee, left)] if left else plan
                led._post([TransferSpec(ids[leg], escrow, credit, amount, mission, action, cause)
                           for leg, credit, amount in legs], keep=False)
                return Closure(mission, kind, cause, client, owner, price, fee, left,
                               tuple(ids[leg] for leg, _credit, _amount in legs), now)
            old, held = led._closure_and_balance(mission, escrow)
            if old is not None:
                if (old.kind, old.cause) != (kind, cause):
                    raise ConflictError(f"{escrow}: already {old.kind} by {old.cause}; "
                                        "re-read the mission, its escrow is closed")
                if (old.client, old.provider_owner, old.provider, old.fee) != (
                        client, owner, price, fee):
                    raise LedgerError(f"{escrow}: {kind} by {cause} was already posted with a "
                                      "different body; repeat the original client, provider "
                                      "and amounts")
                return old
            if held == 0:
                raise LedgerError(f"{escrow}: mission is not funded; fund it before closing it")
            if price + fee > held:
                raise LedgerError(f"{escrow}: insufficient funds: balance {held}, {kind} takes "
                                  f"{price + fee}, short by {price + fee - held}; "
                                  "lower the amounts")
            legs = [*plan, (rest, payee, held - price - fee)] if held > price + fee else plan
            posted = led._chain([TransferSpec(ids[leg], escrow, credit, amount, mission, action,
                                              cause) for leg, credit, amount in legs])
            done = Closure(mission, kind, cause, client, owner, price, fee, held - price - fee,
                           tuple(t.id for t in posted), led._now())
            led._conn.execute("INSERT INTO ledger_closures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               _closure_row(done))
            return done

        return self._write(run)

    # -- export and import -------------------------------------------------------------------

    def dump(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every transfer (posting order) and every closure (by mission), read in one
        transaction: what an export carries."""
        with self._snapshot():
            transfers = [t.to_dict() for t in self.history()]
            closures = [_row_closure(r).to_dict() for r in self._conn.execute(
                "SELECT * FROM ledger_closures ORDER BY mission")]
        return transfers, closures

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def restore(self, transfers: list[dict[str, Any]], closures: list[dict[str, Any]]) -> None:
        """Load exported transfers and closures into an empty ledger, balances replayed, all
        or nothing (import); :meth:`check` then judges what was loaded."""

        def run(ledger: Ledger) -> None:
            conn = ledger._conn
            if conn.execute("SELECT count(*) FROM ledger_transfers").fetchone()[0]:
                raise LedgerError(f"{self._path}: the ledger is not empty; import into a new "
                                  "hub")
            balances: dict[str, int] = {}
            for t in transfers:
                spec = TransferSpec(t["id"], t["debit"], t["credit"], t["amount"], t["mission"],
                                    t["action"], t["cause"])
                _validate(spec)
                conn.execute(
                    "INSERT INTO ledger_transfers (seq, id, debit, credit, amount, mission, "
                    "action, cause, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (t["seq"], *(getattr(spec, f) for f in ("id", "debit", "credit", "amount",
                                                            "mission", "action", "cause")),
                     t["at"]))
                balances[spec.debit] = balances.get(spec.debit, 0) - spec.amount
                balances[spec.credit] = balances.get(spec.credit, 0) + spec.amount
            conn.executemany("INSERT INTO ledger_balances (account, balance) VALUES (?, ?)",
                                   sorted(balances.items()))
            conn.executemany(
                "INSERT INTO ledger_closures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_closure_row(Closure(**{**c, "transfers": tuple(c["transfers"])}))
                 for c in closures])

        try:
            self._write(run)
        except (sqlite3.IntegrityError, KeyError, TypeError) as exc:
            raise LedgerError(f"{self._path}: the exported ledger rows do not load ({exc}); "
                              "re-export") from exc

    # -- invariants ---------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every invariant violation as one line; [] when the ledger is sound."""
        conn, out = self._conn, []
        credits, debits = _flows(conn, "credit"), _flows(conn, "debit")
        cached = self.balances()
        if sum(cached.values()) != 0:
            out.append(f"ledger: balances sum to {sum(cached.values())}, not 0")
        for acct, value in sorted(cached.items()):
            if abs(value) > MAX_BALANCE:
                out.append(f"{acct}: balance {value} is beyond the limit of {MAX_BALANCE}")
        for acct in sorted(set(credits) | set(debits) | set(cached)):
            replayed = credits.get(acct, 0) - debits.get(acct, 0)
            if cached.get(acct, 0) != replayed:
                out.append(f"{acct}: cached balance {cached.get(acct, 0)} != replayed {replayed}")
            if acct != WORLD and replayed < 0:
                out.append(f"{acct}: balance {replayed} is below zero")
        closing = {m: (int(paid), sorted(ids.split(","))) for m, paid, ids in conn.execute(
            "SELECT mission, SUM(amount), group_concat(id) FROM ledger_transfers"
            " WHERE action IN ('settle', 'refund') AND mission IS NOT NULL GROUP BY mission")}
        closures = {c.mission: c for c in map(_row_closure,
                                              conn.execute("SELECT * FROM ledger_closures"))}
        for mission in sorted(set(closing) - set(closures)):
            out.append(f"escrow:{mission}: has closing transfers but no closure")
        for mission, c in sorted(closures.items()):
            escrow = f"escrow:{mission}"
            held = credits.get(escrow, 0) - debits.get(escrow, 0)
            paid, ids = closing.get(mission, (0, []))
            if held != 0:
                out.append(f"{escrow}: {c.kind} but still holds {held}")
            if sorted(c.transfers) != ids:
                out.append(f"{escrow}: the closure lists {len(c.transfers)} transfers, "
                           f"the ledger has {len(ids)} closing transfers")
            funded = credits.get(escrow, 0) - (debits.get(escrow, 0) - paid)
            if not funded == paid == c.total:
                out.append(f"{escrow}: funded {funded} != paid out + refunded {c.total} "
                           f"(closing transfers {paid})")
        return out + self._tree_problems(closures)

    def _tree_problems(self, closures: dict[str, Closure]) -> list[str]:
        """Workflow trees: money funding a child comes from its parent's escrow and returns
        only there; funded = remaining + open children + paid out; a closed parent has no open
        child (docs/protocol.md, "Money through the tree")."""
        out: list[str] = []
        edges: dict[str, str] = {}
        for mission, debit in self._conn.execute(
                "SELECT DISTINCT mission, debit FROM ledger_transfers WHERE action = 'fund' AND "
                "debit LIKE 'escrow:%'"):
            parent = debit.removeprefix("escrow:")
            if edges.setdefault(mission, parent) != parent:
                out.append(f"escrow:{mission}: funded by two parents")
        trees: dict[str, list[str]] = {}
        for child, parent in edges.items():
            trees.setdefault(parent, []).append(child)
        for parent, children in sorted(trees.items()):
            nodes = {f"escrow:{m}" for m in [parent, *children]}
            funded = paid = 0
            seen = {t.id: t for m in [parent, *children] for t in self.history(f"escrow:{m}")}
            for t in seen.values():
                inside_debit, inside_credit = t.debit in nodes, t.credit in nodes
                if inside_credit and not inside_debit:
                    funded += t.amount
                elif inside_debit and not inside_credit:
                    paid += t.amount
                if t.mission in children and t.debit == f"escrow:{t.mission}" and \
                        t.credit.startswith("client:"):
                    out.append(f"escrow:{t.mission}: returns {t.amount} to {t.credit}, not to "
                               f"its parent escrow:{parent}")
            remaining = self.balance(f"escrow:{parent}")
            open_children = sum(self.balance(f"escrow:{c}") for c in children)
            if funded != remaining + open_children + paid:
                out.append(f"escrow:{parent}: funded {funded} != remaining {remaining} + open "
                           f"children {open_children} + paid out {paid}")
            if parent in closures and open_children:
                out.append(f"escrow:{parent}: closed while its children hold {open_children}")
        return out


def _beyond(account: str, balance: int) -> LedgerError:
    what, value = ("tokens ever issued", -balance) if account == WORLD else ("balance", balance)
    return LedgerError(f"{account}: {what} would reach {value}, beyond the limit of "
                       f"{MAX_BALANCE} tokens; move fewer tokens (see Money limits in "
                       "docs/protocol.md)")


def _same(old: TransferSpec, new: TransferSpec) -> None:
    if old.body() != new.body():
        raise LedgerError(
            f"transfer {new.id}: was already posted with a different body ({old.debit} -> "
            f"{old.credit} {old.amount}, {old.action} by {old.cause}); derive a new id for a "
            "new transfer or repeat the original exactly")


def _flows(conn: sqlite3.Connection, side: str) -> dict[str, int]:
    """Every account's total ``side`` (credit or debit) flow, exactly.

    Balances are bounded, but what flows through an account is not (a client funds and gets
    refunded again and again), so a plain SUM could overflow 64 bits. The amounts are summed
    in two halves of 30 bits each, which cannot overflow below 8·10^9 transfers.
    """
    rows = conn.execute(f"SELECT {side}, SUM(amount >> 30), SUM(amount & 1073741823) "
                        f"FROM ledger_transfers GROUP BY {side}")
    return {account: (int(high) << 30) + int(low) for account, high, low in rows}


def _row_transfer(row: tuple[Any, ...]) -> Transfer:
    seq, tid, debit, credit, amount, mission, action, cause, at = row
    return Transfer(tid, debit, credit, int(amount), mission, action, cause, int(seq), at)


def _row_closure(row: tuple[Any, ...]) -> Closure:
    mission, kind, cause, client, owner, provider, fee, refund, transfers, at = row
    return Closure(mission, kind, cause, client, owner, int(provider), int(fee), int(refund),
                   tuple(transfers.split()), at)


def _closure_row(c: Closure) -> tuple[Any, ...]:
    return (c.mission, c.kind, c.cause, c.client, c.provider_owner, c.provider, c.fee,
            c.client_refund, " ".join(c.transfers), c.at)
