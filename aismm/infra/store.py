"""The hub database (SQLite, WAL): the event outbox and execution records.

The ledger keeps its own tables in the same file through :mod:`aismm.infra.ledger`; every other SQL
statement in AISMM lives here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CachedSummary", "Event", "GroupCommit", "Store", "SummaryRow", "backup", "connect",
           "group_commit", "group_for", "worker_alive", "worker_id"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL, ref TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
    pusher TEXT, created TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', claimed_by TEXT, claimed_at REAL,
    done_at TEXT, result TEXT,
    UNIQUE (repo, ref, old, new)
);
CREATE INDEX IF NOT EXISTS events_status ON events (status, id);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL, ref TEXT NOT NULL, found TEXT, restored TEXT,
    reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, agent TEXT NOT NULL, agent_owner TEXT NOT NULL,
    client TEXT NOT NULL, client_owner TEXT NOT NULL, contract TEXT NOT NULL,
    mission TEXT NOT NULL, finished_at TEXT NOT NULL, latency_seconds REAL NOT NULL,
    quality REAL, outcome TEXT NOT NULL, reworks INTEGER NOT NULL, cost INTEGER NOT NULL,
    commits TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_agent ON executions (agent);
DROP TABLE IF EXISTS summaries;
CREATE TABLE IF NOT EXISTS mission_summaries (
    mission TEXT PRIMARY KEY, last INTEGER NOT NULL, registry TEXT NOT NULL,
    failed TEXT NOT NULL, refs TEXT NOT NULL, files TEXT, stamp TEXT,
    contract TEXT NOT NULL, tier TEXT NOT NULL, client TEXT NOT NULL, agents TEXT NOT NULL,
    price INTEGER NOT NULL, fee INTEGER NOT NULL, closed TEXT, open TEXT NOT NULL,
    deadline REAL NOT NULL, met_in_time INTEGER NOT NULL
) WITHOUT ROWID;
"""

# One cached mission summary (table ``mission_summaries``, written by
# :func:`aismm.services.lifecycle.list_missions`), in column order: mission, the id of its
# repository's last logged move, the registry commit and the failed runs it was derived for,
# its judged refs ("ref=oid" lines), the files that hold them and their stamp
# (:func:`aismm.infra.git.ref_stamp`; None when not kept), contract, tier, client, agents (a
# JSON list), price, fee, the closed state (or None), the open state, the deadline (POSIX
# seconds) and whether a delivery was met in time (0/1).
SummaryRow = tuple[str, int, str, str, str, str | None, str | None, str, str, str, str, int, int,
                   str | None, str, float, int]
CachedSummary = tuple[str, int, str, str, str, str | None, str | None, str, str, str, str, int,
                      int, str | None, str, float, int, int]
_SUMMARY_COLUMNS = ("mission, last, registry, failed, refs, files, stamp, contract, tier, "
                    "client, agents, price, fee, closed, open, deadline, met_in_time")


_SCHEMA_NAMES = set(re.findall(r"IF NOT EXISTS (\w+)", _SCHEMA))


def connect(path: Path, thread_bound: bool = True) -> sqlite3.Connection:
    """A connection with the hub's settings: WAL, synchronous=FULL, a generous busy timeout."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                           check_same_thread=thread_bound)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _Job:
    """One caller's transaction, waiting for the commit that makes it durable.

    A group's callers are woken as a relay: the writer wakes the first, and each caller, once
    awake, wakes the next (:meth:`wait`). Waking all of them at once would set every caller
    fighting for the interpreter lock at the same instant; the relay hands it on one by one.
    """

    __slots__ = ("done", "error", "fn", "next", "ready", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.done = threading.Lock()  # released once: by the writer (a group's first job) or
        self.done.acquire()  # by the caller of the job before it in the group
        self.result: Any = None
        self.error: BaseException | None = None
        self.next: _Job | None = None  # the job whose caller this one wakes
        self.ready = False  # the group's commit is over: result and error are final

    def wait(self, relay_wait: float) -> None:
        """Block until the job's group is committed (or failed), then wake the next caller.

        A caller interrupted while it waited (a signal in the main thread) never passes the
        relay on; the one after it finds its job ``ready`` within ``relay_wait`` seconds and
        goes on by itself."""
        while not self.done.acquire(timeout=relay_wait):
            if self.ready:
                break
        if self.next is not None:
            self.next.done.release()


_LINGER = 0.002  # seconds the writer waits for the rest of an expected group
_READERS_MAX = 8  # read connections a group writer keeps for Store (see Store)
_RELAY_WAIT = 0.05  # seconds a caller waits before it checks whether its group is over
_CHECKPOINT_PAGES = 10_000  # the group writer's WAL autocheckpoint (SQLite's default: 1,000)


class GroupCommit:
    """One writer connection and thread for a hub database: group commit.

    Callers from any thread hand a function of the connection to :meth:`run` and block. The
    writer takes every job waiting, runs each in its own SAVEPOINT inside one ``BEGIN
    IMMEDIATE`` (a failing job is undone alone and gets its exception), commits once with
    ``synchronous=FULL`` and only then wakes the callers (as a relay, :class:`_Job`): a
    caller returns only after its transaction's commit is durable, and one fdatasync serves
    the whole group. A failed COMMIT fails every job of the group (none of them returns as
    done).

    The writer takes a group once as many jobs wait as its last group held (the callers it
    just woke hand in their next ones), or ``linger`` seconds after the first one arrived,
    whichever comes first; a lone caller is served at once. Taking the whole group in one go,
    rather than a job at a time while the woken callers still run, keeps the writer and the
    callers from handing the interpreter lock back and forth at every statement. The
    writer's connection checkpoints the WAL every ``checkpoint_pages`` pages rather than
    SQLite's 1,000: fewer, larger checkpoints.
    """

    def __init__(self, path: Path, max_group: int = 512, linger: float = _LINGER,
                 checkpoint_pages: int = _CHECKPOINT_PAGES) -> None:
        self.path = Path(path)
        self.max_group = max_group
        self.linger = linger
        self.relay_wait = _RELAY_WAIT  # see _Job.wait
        self._lock = threading.Lock()  # guards the fields below
        self._pending: list[_Job] = []
        self._readers: list[tuple[tuple[int, int], sqlite3.Connection]] = []  # Store's, kept
        self._want = 1  # jobs the writer waits for: its last group's size
        self._waiting = False  # the writer sleeps on _wake and nobody woke it yet
        self._closed = False
        self._wake = threading.Lock()  # released once to wake the writer
        self._wake.acquire()
        self._conn = connect(self.path, thread_bound=False)  # the writer thread's alone
        self._conn.execute("PRAGMA cache_size = -65536")
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint_pages)}")
        self._thread = threading.Thread(target=self._loop, name=f"group-commit {path}",
                                        daemon=True)
        self.groups = 0  # commits made (for tests and benchmarks)
        self.pid = os.getpid()
        self._thread.start()

    def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(conn)`` in the next group; its result once the group's commit is durable."""
        if threading.current_thread() is self._thread:  # a job that writes again: nest
            self._conn.execute("SAVEPOINT nested")
            try:
                out = fn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK TO nested")
                self._conn.execute("RELEASE nested")
                raise
            self._conn.execute("RELEASE nested")
            return out
        job = _Job(fn)
        with self._lock:
            if self._closed:
                raise sqlite3.OperationalError(f"{self.path}: the group writer is closed")
            pending = self._pending
            pending.append(job)
            if self._waiting and (len(pending) == 1 or len(pending) >= self._want):
                self._waiting = False
                self._wake.release()
        job.wait(self.relay_wait)
        if job.error is not None:
            raise job.error
        result: _T = job.result
        return result

    def reader(self) -> tuple[tuple[int, int], sqlite3.Connection] | None:
        """A kept read connection to this writer's file (see :class:`Store`) with the file's
        (device, inode) it was opened on, or None."""
        now = _file_identity(self.path)
        if now is None:
            return None
        with self._lock:
            while self._readers:
                identity, conn = self._readers.pop()
                if identity == now:
                    return identity, conn
                conn.close()  # the path names another file now
        return None

    def keep_reader(self, conn: sqlite3.Connection, identity: tuple[int, int]) -> bool:
        """Keep ``conn``, opened on the file ``identity`` names, for :meth:`reader`, while the
        path still names that file (False: not kept; the caller closes it)."""
        if conn.in_transaction or _file_identity(self.path) != identity:
            return False
        with self._lock:
            if self._closed or len(self._readers) >= _READERS_MAX:
                return False
            self._readers.append((identity, conn))
            return True

    def queued(self) -> int:
        """Jobs handed in and not yet taken by the writer."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Finish the jobs already handed in, then stop the writer and close its connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._waiting:
                self._waiting = False
                self._wake.release()
        self._thread.join()
        self._conn.close()
        with self._lock:
            readers, self._readers = self._readers, []
        for _identity, conn in readers:
            conn.close()

    def _loop(self) -> None:
        lingered = False  # the writer already waited ``linger`` for the group in hand
        while True:
            with self._lock:
                pending, closed = self._pending, self._closed
                if pending and (closed or lingered or len(pending) >= self._want):
                    group, self._pending = pending[:self.max_group], pending[self.max_group:]
                elif closed:
                    return
                else:
                    group, self._waiting = [], True
            if group:
                lingered = False
                self._want = len(group)
                self._commit(group)
                continue
            if self._wake.acquire(timeout=self.linger if pending else -1):
                continue
            with self._lock:  # timed out: take what came; clear a wake-up sent meanwhile
                if self._waiting:
                    self._waiting = False
                else:
                    self._wake.acquire()
            lingered = True

    def _commit(self, group: list[_Job]) -> None:
        conn = self._conn
        try:
            if not self._run_group(group, isolated=False):
                # A job failed: undo the whole group and run it again, each job in its own
                # SAVEPOINT, so the failing one is undone alone (jobs are functions of the
                # database, so running one again before its commit changes nothing).
                conn.execute("ROLLBACK")
                self._run_group(group, isolated=True)
            conn.execute("COMMIT")
            self.groups += 1
        except BaseException as exc:  # nothing of this group is durable: fail every job
            with suppress(sqlite3.Error):  # a failing ROLLBACK must not leave callers waiting
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            for job in group:
                job.result, job.error = None, exc
        # the relay (_Job.wait): every link first, then every job ready (a caller that finds
        # its job ready may pass the relay on at once), then the first caller woken
        for job, after in zip(group, [*group[1:], None], strict=True):
            job.next = after
        for job in group:
            job.ready = True
        group[0].done.release()

    def _run_group(self, group: list[_Job], isolated: bool) -> bool:
        """Run the group's jobs in one transaction; False at the first failing job when not
        ``isolated`` (the transaction is then left for the caller to roll back)."""
        conn = self._conn
        _begin(conn)
        for job in group:
            job.result, job.error = None, None
            if isolated:
                conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except Exception as exc:  # the job's own failure
                if not isolated:
                    return False
                job.error = exc
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO job")
            if not conn.in_transaction:  # SQLite rolled the whole group back (I/O, full disk)
                raise sqlite3.OperationalError(f"{self.path}: the group was rolled back")
            if isolated:
                conn.execute("RELEASE job")
        return True


def _begin(conn: sqlite3.Connection, attempts: int = 4) -> None:
    """BEGIN IMMEDIATE, waiting out another process' writer (the busy timeout, a few times)."""
    for attempt in range(attempts):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == attempts - 1:
                raise


_GROUPS: dict[str, GroupCommit] = {}
_GROUPS_LOCK = threading.Lock()


def _key(path: Path) -> str:
    return os.path.abspath(path)


def group_for(path: Path) -> GroupCommit | None:
    """The group writer this process runs for the database at ``path``, if any (a forked
    child has none: the writer thread stayed in its parent)."""
    found = _GROUPS.get(_key(path)) if _GROUPS else None
    return found if found is not None and found.pid == os.getpid() else None


@contextmanager
def group_commit(path: Path, **tuning: Any) -> Iterator[GroupCommit]:
    """Route this process' writes to the database at ``path`` (outbox, executions, ledger)
    through one group writer while the block runs (``aismm serve`` does). ``tuning`` passes
    :class:`GroupCommit`'s ``max_group``, ``linger`` and ``checkpoint_pages`` (benchmarks)."""
    key = _key(path)
    with _GROUPS_LOCK:
        if key in _GROUPS:
            raise RuntimeError(f"{path}: a group writer already runs for this database")
        _GROUPS[key] = writer = GroupCommit(path, **tuning)
    try:
        yield writer
    finally:
        with _GROUPS_LOCK:
            del _GROUPS[key]
        writer.close()

def backup(source: Path, dest: Path) -> None:
    """Copy the hub database to ``dest`` in one consistent step (SQLite's online backup): the
    outbox, executions and ledger as of one instant, whatever writers do meanwhile."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(str(dest))
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """A process' start time (clock ticks since boot, /proc/<pid>/stat field 22); None when no
    such process runs or it is a zombie; "" when /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()  # after the (command name), which may hold spaces
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent: it will never finish
        return None
    return fields[19]


def worker_id() -> str:
    """This process as an event claimant: host, boot, pid and start time (pid reuse safe)."""
    pid = os.getpid()
    return json.dumps({"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
                       "start": _start_time(pid) or ""}, sort_keys=True)


def worker_alive(claimed_by: str | None) -> bool | None:
    """Whether the process behind a claim still runs: True, False, or None when this host
    cannot tell (another host, an old-style claim): then only the lease frees the event."""
    try:
        who = json.loads(claimed_by or "")
        host, boot, pid, start = who["host"], who["boot"], int(who["pid"]), who["start"]
    except (ValueError, TypeError, KeyError):
        return None
    if host != socket.gethostname() or boot != _boot_id():
        return None
    now = _start_time(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return not Path("/proc/self/stat").exists()  # /proc works: no stat file: gone/zombie
    return not start or not now or now == start


def describe_worker(claimed_by: str | None) -> str:
    """``pid 1234`` (``pid 1234 on host``) for a claim, for humans."""
    try:
        who = json.loads(claimed_by or "")
        pid = f"pid {who['pid']}"
        return pid if who["host"] == socket.gethostname() else f"{pid} on {who['host']}"
    except (ValueError, TypeError, KeyError):
        return f"worker {claimed_by}"


_EVENT_COLUMNS = "id, repo, ref, old, new, pusher, status, result"  # EventRow's fields


@dataclass(frozen=True)
class Event:
    """One accepted ref update waiting to be processed."""

    id: int
    repo: str
    ref: str
    old: str
    new: str
    pusher: str | None


@dataclass(frozen=True)
class EventRow(Event):
    """An event as the ref-state log holds it, with how its processing ended: ``status``
    (pending, done or failed) and ``result`` (the JSON text the worker stored, or None)."""

    status: str = "pending"
    result: str | None = None


@dataclass(frozen=True)
class Incident:
    """A write that skipped the gate, refused and put back: the ref's value ``found`` and the
    logged value ``restored`` (None: the ref did not exist, so it was deleted)."""

    id: int
    repo: str
    ref: str
    found: str | None
    restored: str | None
    reason: str
    at: str


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file ``path`` names, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@functools.cache
def _closed() -> sqlite3.Connection:
    """A closed connection: what a closed Store holds, so using it raises as before."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.close()
    return conn


class Store:
    """Outbox and execution records in ``hub.db``.

    While this process runs a group writer for the file (``aismm serve``), a closed Store's
    connection is kept for the next one (:class:`GroupCommit` holds them; opening one and
    reading the schema took ~0.4 ms, some ten times per served mission): a kept connection is
    reused only while the path still names the file it was opened on (device and inode). A
    Store method reads its rows whole (no cursor outlives the call), so a kept connection
    holds no read snapshot."""

    def __init__(self, path: Path) -> None:
        self._group = group_for(path)
        self._identity: tuple[int, int] | None = None  # the file the connection was opened on
        if self._group is not None:
            kept = self._group.reader()
            if kept is not None:
                self._identity, self.conn = kept
                return
            # taken before connecting: a race can only fail the reuse
            self._identity = _file_identity(path)
        self.conn = connect(path, thread_bound=self._group is None)
        have = {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master")}
        if not have >= _SCHEMA_NAMES:  # create what is missing; a ready file takes no write lock
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close (or hand back) the connection; a closed Store raises if used (as sqlite3 does)."""
        conn = self.conn
        if conn is _closed():
            return
        self.conn = _closed()
        if self._group is None or self._identity is None or \
                not self._group.keep_reader(conn, self._identity):
            conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outbox ---------------------------------------------------------------------------
    def record_updates(self, repo: str, updates: list[tuple[str, str, str]], pusher: str | None,
                       created: str) -> None:
        """Append accepted ref updates to the outbox (a replay of the same update is a no-op)."""
        rows = [(repo, ref, old, new, pusher, created) for old, new, ref in updates]
        self._write(lambda conn: conn.executemany(
            "INSERT OR IGNORE INTO events (repo, ref, old, new, pusher, created) "
            "VALUES (?, ?, ?, ?, ?, ?)", rows))

    def claim(self, worker: str, lease_seconds: float = 300.0, max_id: int | None = None
              ) -> Event | None:
        """Claim the oldest pending event that is free, up to ``max_id``.

        An event is free when nobody claimed it, when its lease expired, or when the process
        that claimed it is gone (same host: its pid no longer runs, or now runs another
        program; see :func:`worker_alive`). A killed worker's events are reclaimed at once.
        """
        now = time.time()

        def take(conn: sqlite3.Connection) -> Event | None:
            rows = conn.execute(
                "SELECT id, repo, ref, old, new, pusher, claimed_by, claimed_at FROM events "
                "WHERE status = 'pending' AND id <= ? ORDER BY id",
                (max_id if max_id is not None else 2**62,),
            )
            for *fields, claimed_by, claimed_at in rows:
                if claimed_at is None or claimed_at < now - lease_seconds or \
                        worker_alive(claimed_by) is False:
                    event = Event(*fields)
                    break
            else:
                return None
            conn.execute("UPDATE events SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                         (worker, now, event.id))
            return event

        return self._write(take)

    def busy(self, lease_seconds: float = 300.0) -> dict[str, int]:
        """Pending events another live worker holds a claim on: worker description -> count."""
        now = time.time()
        out: dict[str, int] = {}
        for claimed_by, claimed_at in self.conn.execute(
                "SELECT claimed_by, claimed_at FROM events WHERE status = 'pending' "
                "AND claimed_at IS NOT NULL ORDER BY id"):
            if claimed_at >= now - lease_seconds and worker_alive(claimed_by) is not False:
                who = describe_worker(claimed_by)
                out[who] = out.get(who, 0) + 1
        return out

    def release(self, event_id: int) -> None:
        """Give a claimed event back, still pending (the hub could not process it; its fault)."""
        self._write(lambda conn: conn.execute(
            "UPDATE events SET claimed_by = NULL, claimed_at = NULL "
            "WHERE id = ? AND status = 'pending'", (event_id,)))

    def finish(self, event_id: int, result: dict[str, Any], done_at: str,
               status: str = "done") -> None:
        args = (status, done_at, json.dumps(result, sort_keys=True), event_id)
        self._write(lambda conn: conn.execute(
            "UPDATE events SET status = ?, done_at = ?, result = ? WHERE id = ?", args))

    def event_ids(self, repo: str, updates: list[tuple[str, str, str]]) -> list[int]:
        """The outbox ids of these ref updates (old, new, ref) of one repository."""
        out = []
        for old, new, ref in updates:
            row = self.conn.execute(
                "SELECT id FROM events WHERE repo = ? AND ref = ? AND old = ? AND new = ?",
                (repo, ref, old, new)).fetchone()
            if row is not None:
                out.append(int(row[0]))
        return out

    def events_by_id(self, ids: list[int]) -> list[EventRow]:
        rows = self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN "
            f"({', '.join('?' for _ in ids)}) ORDER BY id", list(ids)).fetchall()
        return [EventRow(*row) for row in rows]

    def max_event_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def pending(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM events WHERE status = 'pending'").fetchone()[0])

    def events(self, repo: str | None = None) -> list[EventRow]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events"
        rows = self.conn.execute(sql + (" WHERE repo = ?" if repo else "") + " ORDER BY id",
                                 (repo,) if repo else ()).fetchall()
        return [EventRow(*row) for row in rows]

    def last_known(self) -> dict[str, dict[str, str]]:
        """The latest recorded value of every ref, per repository (the ref-state log)."""
        out: dict[str, dict[str, str]] = {}
        for repo, ref, new in self.conn.execute("SELECT repo, ref, new FROM events ORDER BY id"):
            out.setdefault(repo, {})[ref] = new
        return out

    def last_values(self, repo: str) -> dict[str, str]:
        """The latest recorded value of every ref of one repository (the judged state)."""
        return {str(ref): str(new) for ref, new in self.conn.execute(
            "SELECT ref, new FROM events WHERE id IN "
            "(SELECT max(id) FROM events WHERE repo = ? GROUP BY ref)", (repo,))}

    def latest(self) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
        """The ref-state log in one read: every repository's refs at their last recorded value
        (deleted ones left out) and the id of its last recorded move."""
        refs: dict[str, dict[str, str]] = {}
        last: dict[str, int] = {}
        for repo, ref, new, eid in self.conn.execute(
                "SELECT repo, ref, new, id FROM events WHERE id IN "
                "(SELECT max(id) FROM events GROUP BY repo, ref)"):
            held = refs.setdefault(repo, {})
            if new != "0" * 40:
                held[ref] = new
            last[repo] = max(last.get(repo, 0), int(eid))
        return refs, last

    def last_event_id(self, repo: str) -> int:
        """The id of the last recorded move of one repository (0 when none)."""
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events WHERE repo = ?",
                                     (repo,)).fetchone()[0])

    # -- derived summaries ----------------------------------------------------------------
    def summaries(self) -> dict[str, CachedSummary]:
        """Every cached mission summary (:data:`SummaryRow`) followed by the id of its
        repository's last logged move now (0 when none), in one read. A row whose columns do
        not have their types is left out (derived again)."""
        checks = " AND ".join(
            [f"typeof({c}) = 'text'" for c in ("registry", "failed", "refs", "contract", "tier",
                                                "client", "agents", "open")]
            + [f"typeof({c}) = 'integer'" for c in ("last", "price", "fee", "met_in_time")]
            + [f"typeof({c}) IN ('text', 'null')" for c in ("files", "stamp", "closed")]
            + ["typeof(deadline) IN ('real', 'integer')"])
        return {row[0]: row for row in self.conn.execute(
            f"SELECT {_SUMMARY_COLUMNS}, coalesce((SELECT max(id) FROM events "
            "WHERE repo = 'missions/' || s.mission || '.git'), 0) "
            f"FROM mission_summaries AS s WHERE {checks}")}

    def put_summaries(self, rows: list[SummaryRow]) -> None:
        """Cache mission summaries, replacing older ones of the same missions."""
        self._write(lambda conn: conn.executemany(
            f"INSERT OR REPLACE INTO mission_summaries ({_SUMMARY_COLUMNS}) "
            f"VALUES ({', '.join('?' * 17)})", rows))

    def log_rows(self) -> list[dict[str, Any]]:
        """The whole ref-state log, oldest first, with each event's status (for export)."""
        keys = ("id", "repo", "ref", "old", "new", "pusher", "created", "status")
        return [dict(zip(keys, row, strict=True)) for row in self.conn.execute(
            f"SELECT {', '.join(keys)} FROM events ORDER BY id")]

    def restore(self, log: list[dict[str, Any]], executions: list[dict[str, Any]]) -> None:
        """Load an exported ref-state log and execution records into an empty database, in
        one transaction (import): a pending event stays pending (the new hub processes it),
        every other keeps its status."""
        rows = [(e["id"], e["repo"], e["ref"], e["old"], e["new"], e["pusher"], e["created"],
                 str(e.get("status", "done")),
                 None if e.get("status") == "pending" else e["created"]) for e in log]

        def load(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT count(*) FROM events").fetchone()[0]:
                raise ValueError("restore: the database already holds events")
            conn.executemany(
                "INSERT INTO events (id, repo, ref, old, new, pusher, created, status, done_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

        self._write(load)
        for record in executions:
            self.add_execution(record)

    def record_incident(self, repo: str, ref: str, found: str | None, restored: str | None,
                        reason: str, at: str) -> None:
        """Note a ref write that skipped the gate and was refused and put back."""
        args = (repo, ref, found, restored, reason, at)
        self._write(lambda conn: conn.execute(
            "INSERT INTO incidents (repo, ref, found, restored, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)", args))

    def incidents(self, repo: str | None = None, after: int = 0) -> list[Incident]:
        """Recorded incidents (of one repository), those with an id above ``after``."""
        sql = "SELECT id, repo, ref, found, restored, reason, at FROM incidents WHERE id > ?"
        rows = self.conn.execute(sql + (" AND repo = ?" if repo else "") + " ORDER BY id",
                                 (after, repo) if repo else (after,)).fetchall()
        return [Incident(*row) for row in rows]

    def ref_history(self, repo: str, ref: str) -> list[tuple[str, str]]:
        """Every value the log recorded for one ref, oldest first: (new, created) pairs."""
        return [(str(new), str(created)) for new, created in self.conn.execute(
            "SELECT new, created FROM events WHERE repo = ? AND ref = ? ORDER BY id",
            (repo, ref))]

    # -- executions -----------------------------------------------------------------------
    def add_execution(self, record: dict[str, Any]) -> bool:
        """Append one execution record; False when its id was already recorded."""
        cols = ("id", "agent", "agent_owner", "client", "client_owner", "contract", "mission",
                "finished_at", "latency_seconds", "quality", "outcome", "reworks", "cost",
                "commits")
        values = [json.dumps(record[c], sort_keys=True) if c == "commits" else record[c]
                  for c in cols]
        sql = (f"INSERT OR IGNORE INTO executions ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        return self._write(lambda conn: conn.execute(sql, values).rowcount == 1)

    def executions(self, agent: str | None = None, outcome: str | None = None
                   ) -> list[dict[str, Any]]:
        sql = ("SELECT id, agent, agent_owner, client, client_owner, contract, mission, "
               "finished_at, latency_seconds, quality, outcome, reworks, cost, commits "
               "FROM executions")
        where = [(c, v) for c, v in (("agent", agent), ("outcome", outcome)) if v]
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _v in where)
        rows = self.conn.execute(sql + " ORDER BY id", [v for _c, v in where]).fetchall()
        keys = ("id", "agent", "agent_owner", "client", "client_owner", "contract", "mission",
                "finished_at", "latency_seconds", "quality", "outcome", "reworks", "cost",
                "commits")
        out = []
        for row in rows:
            rec = dict(zip(keys, row, strict=True))
            rec["commits"] = json.loads(rec["commits"])
            out.append(rec)
        return out

    # -- plumbing -------------------------------------------------------------------------
    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(conn)`` in one write transaction: the process' group writer's when it runs one
        (it returns once the group's commit is durable), else ``BEGIN IMMEDIATE`` here."""
        if self._group is not None:
            return self._group.run(fn)
        with _Tx(self.conn) as conn:
            return fn(conn)


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
