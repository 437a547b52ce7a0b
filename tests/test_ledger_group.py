"""Group commit: one writer connection for the hub database, as ``aismm serve`` runs it.

Real SQLite files, real threads, a real child process killed mid-run: every caller settles
exactly once, a failing job is undone alone, and no acknowledged transfer is lost.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from aismm.core.clock import FixedClock
from aismm.core.errors import LedgerError
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store, group_commit, group_for

REPO = Path(__file__).resolve().parent.parent
START = "2026-01-01T00:00:00Z"
PRICE, FEE = 100, 10


def _settle(db: Path, mission: str) -> None:
    with Ledger(db, FixedClock(START)) as ledger:
        ledger.fund(mission, "alice", PRICE, FEE, f"open-{mission}")
        ledger.settle(mission, "alice", "bob", PRICE, FEE, f"merge-{mission}")


@pytest.mark.parametrize("tuning", [{}, {"linger": 0, "checkpoint_pages": 1000},
                                    {"linger": 0.002, "checkpoint_pages": 2}],
                         ids=["default", "untuned", "checkpoint-every-commit"])
def test_concurrent_callers_all_settle_exactly_once(tmp_path: Path,
                                                    tuning: dict[str, float]) -> None:
    db = tmp_path / "hub.db"
    missions = [f"m{i}" for i in range(96)]
    with Ledger(db, FixedClock(START)) as ledger:
        ledger.deposit("alice", len(missions) * (PRICE + FEE), "top-up")
    errors: list[BaseException] = []

    def caller(c: int) -> None:
        try:  # every mission is settled by two callers at once: replays must be no-ops
            for mission in missions[c % 16::16]:
                _settle(db, mission)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with group_commit(db, **tuning) as writer:
        checkpoint = writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert checkpoint == tuning.get("checkpoint_pages", 10_000)
        threads = [threading.Thread(target=caller, args=(c,)) for c in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        jobs = 2 * 2 * len(missions)
        assert writer.groups < jobs  # callers shared commits
    assert errors == []
    with Ledger(db) as ledger:
        assert ledger.check() == []
        assert ledger.balance("client:alice") == 0
        assert ledger.balance("provider:bob") == PRICE * len(missions)
        assert ledger.balance("platform:fees") == FEE * len(missions)
        assert all(ledger.closure(m) is not None for m in missions)
        assert len(ledger.history()) == 1 + 4 * len(missions)  # deposit + 2 fund + 2 settle


def test_a_failing_job_is_undone_alone_and_the_rest_of_its_group_commits(
        tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with Ledger(db, FixedClock(START)) as ledger:
        ledger.deposit("alice", 2 * (PRICE + FEE), "top-up")
    hold, started = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def fund(mission: str, price: int) -> None:
        try:
            with Ledger(db, FixedClock(START)) as ledger:
                ledger.fund(mission, "alice", price, FEE, f"open-{mission}")
            outcome[mission] = "funded"
        except LedgerError as exc:
            outcome[mission] = str(exc)

    with group_commit(db) as writer:
        blocker = threading.Thread(target=writer.run,
                                   args=(lambda _conn: (started.set(), hold.wait()),))
        blocker.start()
        started.wait()  # the writer runs the blocker's group
        callers = [threading.Thread(target=fund, args=args)
                   for args in (("a", PRICE), ("b", 10**6), ("c", PRICE))]
        for t in callers:
            t.start()
        while writer.queued() < len(callers):  # all three wait for the next group
            threading.Event().wait(0.001)
        before = writer.groups
        hold.set()
        for t in [blocker, *callers]:
            t.join()
        assert writer.groups == before + 2  # the blocker's group, then the three together
    assert outcome["a"] == outcome["c"] == "funded"
    assert outcome["b"].startswith("client:alice: insufficient funds")
    with Ledger(db) as ledger:
        assert ledger.check() == []
        assert ledger.balance("escrow:a") == ledger.balance("escrow:c") == PRICE + FEE
        assert ledger.balance("escrow:b") == 0
        assert ledger.balance("client:alice") == 0


CHILD = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from aismm.core.clock import FixedClock
    from aismm.infra.ledger import Ledger
    from aismm.infra.store import group_commit

    db, lock = Path(sys.argv[1]), threading.Lock()

    def caller(c):
        with Ledger(db, FixedClock("2026-01-01T00:00:00Z")) as ledger:
            for i in range(c, 10**6, 32):
                m = f"m{i}"
                ledger.fund(m, "alice", 100, 10, "open-" + m)
                ledger.settle(m, "alice", "bob", 100, 10, "merge-" + m)
                with lock:
                    sys.stdout.write(m + "\\n")
                    sys.stdout.flush()

    with group_commit(db):
        threads = [threading.Thread(target=caller, args=(c,)) for c in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
""")


def test_a_crash_mid_batch_loses_no_acknowledged_transfer(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with Ledger(db, FixedClock(START)) as ledger:
        ledger.deposit("alice", 10**12, "top-up")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=REPO,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < 300:
            line = proc.stdout.readline()
            assert line, "the child stopped before settling 300 missions"
            acked.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)  # while groups are in flight
        proc.wait()
        proc.stdout.close()
    with Ledger(db) as ledger:
        assert ledger.check() == []
        closed = {m for m in (f"m{i}" for i in range(len(acked) + 2000))
                  if ledger.closure(m) is not None}
        assert set(acked) <= closed
        for m in acked:
            assert ledger.balance(f"escrow:{m}") == 0
        assert ledger.balance("provider:bob") == PRICE * len(closed)


def test_the_outbox_goes_through_the_writer_and_records_each_update_once(
        tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    Store(db).close()
    updates = [("0" * 40, f"{i:040x}", f"refs/heads/r{i}") for i in range(40)]

    def record(i: int) -> None:
        with Store(db) as store:
            store.record_updates("registry.git", updates[i % 20::20], None, START)

    with group_commit(db) as writer:
        assert group_for(db) is writer
        threads = [threading.Thread(target=record, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with Store(db) as store:
            event = store.claim("me")
            assert event is not None and event.id == 1
    assert group_for(db) is None
    with Store(db) as store:
        rows = store.events("registry.git")
    assert sorted(r.ref for r in rows) == sorted(ref for _o, _n, ref in updates)


def test_a_second_writer_for_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with group_commit(db), pytest.raises(RuntimeError, match="already runs"), \
            group_commit(db):
        pass


def test_a_ledger_outliving_the_writer_is_refused_not_left_waiting(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "hub.db"
    with group_commit(db):
        ledger = Ledger(db, FixedClock(START))
    with pytest.raises(sqlite3.OperationalError, match="group writer is closed"):
        ledger.deposit("alice", 5, "late")
    ledger.close()
    with Ledger(db) as fresh:  # a ledger opened afterwards writes on its own connection
        fresh.deposit("alice", 5, "late")
        assert fresh.balance("client:alice") == 5


def test_a_replayed_settle_in_a_group_returns_the_original_closure(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with Ledger(db, FixedClock(START)) as ledger:
        ledger.deposit("alice", 200, "top-up")
        ledger.fund("m1", "alice", PRICE, FEE + 50, "open-m1")  # 50 more than the fee
    clock = FixedClock(START)
    results: list[Any] = []

    def settle() -> None:
        with Ledger(db, clock) as ledger:
            try:
                results.append(ledger.settle("m1", "alice", "bob", PRICE, FEE, "merge-m1"))
            except LedgerError as exc:  # pragma: no cover - reported below
                results.append(exc)

    with group_commit(db) as writer:
        threads = [threading.Thread(target=settle) for _ in range(8)]  # all at once
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.advance("PT1H")
        settle()  # a replay in a later group, an hour on
        with Ledger(db, clock) as ledger, pytest.raises(LedgerError, match="different body"):
            ledger.settle("m1", "alice", "bob", PRICE + 1, FEE, "merge-m1")
        assert writer.groups >= 2
    first = results[0]
    assert (first.provider, first.fee, first.client_refund, first.at) == (PRICE, FEE, 50, START)
    assert all(r == first for r in results)  # the original closure, its time included
    with Ledger(db) as ledger:
        assert ledger.closure("m1") == first
        assert ledger.balances() == {"world": -200, "client:alice": 90, "escrow:m1": 0,
                                     "provider:bob": PRICE, "platform:fees": FEE}
        assert ledger.check() == []


def test_the_writer_takes_a_group_as_large_as_its_last_and_close_ends_a_linger(
        tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    Ledger(db).close()
    hold, started = threading.Event(), threading.Event()
    done: list[int] = []

    def job(n: int) -> Any:
        return lambda conn: done.append(n)

    with group_commit(db, linger=60.0) as writer:  # a broken rule would wait out the minute
        writer.run(job(0))  # a lone caller is served at once
        blocker = threading.Thread(target=writer.run,
                                   args=(lambda _conn: (started.set(), hold.wait()),))
        blocker.start()
        started.wait()
        three = [threading.Thread(target=writer.run, args=(job(n),)) for n in (1, 2, 3)]
        for t in three:
            t.start()
        while writer.queued() < 3:
            threading.Event().wait(0.001)
        hold.set()
        for t in [blocker, *three]:
            t.join()
        groups = writer.groups  # ..., the group of three: the writer now waits for three
        again = [threading.Thread(target=writer.run, args=(job(n),)) for n in (4, 5, 6)]
        for t in again:
            t.start()
        for t in again:
            t.join()  # the third one completes the group: no lingering
        assert writer.groups == groups + 1
        late = threading.Thread(target=writer.run, args=(job(7),))
        late.start()
        while writer.queued() < 1:
            threading.Event().wait(0.001)
    late.join()  # close() committed the job the writer lingered for
    assert sorted(done) == list(range(8))
    assert writer.groups == groups + 2


class _Interrupted(Exception):
    pass


def test_a_caller_interrupted_while_it_waits_does_not_hold_up_the_rest_of_its_group(
        tmp_path: Path) -> None:
    """Callers are woken as a relay (each wakes the next); one interrupted by a signal never
    passes it on, and those after it still return once their group is committed."""
    db = tmp_path / "hub.db"
    Ledger(db).close()
    hold, started = threading.Event(), threading.Event()
    done: list[int] = []
    main = threading.main_thread()
    assert threading.current_thread() is main  # a signal interrupts the main thread's wait

    def interrupt(_signum: int, _frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with group_commit(db) as writer:
            writer.relay_wait = 0.001  # how soon a caller looks for itself (the injected poll)
            blocker = threading.Thread(target=writer.run,
                                       args=(lambda _conn: (started.set(), hold.wait()),))
            blocker.start()
            started.wait()
            followers = [threading.Thread(target=writer.run,
                                          args=(lambda conn, n=n: done.append(n),))
                         for n in (1, 2, 3)]

            def queue_then_interrupt() -> None:
                while writer.queued() < 1:  # the main thread's job is first in the group
                    threading.Event().wait(0.001)
                for t in followers:
                    t.start()
                while writer.queued() < 4:
                    threading.Event().wait(0.001)
                signal.pthread_kill(main.ident or 0, signal.SIGUSR1)

            helper = threading.Thread(target=queue_then_interrupt)
            helper.start()
            with pytest.raises(_Interrupted):
                writer.run(lambda conn: done.append(0))
            hold.set()  # the group [0, 1, 2, 3] commits; 0's caller is gone
            for t in [helper, blocker, *followers]:
                t.join(timeout=30)
                assert not t.is_alive(), "a caller after the interrupted one was left waiting"
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert sorted(done) == [0, 1, 2, 3]  # the interrupted caller's job was committed too
    with Ledger(db) as ledger:
        assert ledger.check() == []


def test_a_served_store_reuses_its_connection_only_while_the_path_names_the_same_file(
        tmp_path: Path) -> None:
    """In serve (a group writer runs), a closed Store's connection serves the next Store, from
    any thread; a hub.db replaced meanwhile is read afresh, never through the old file."""
    db, other = tmp_path / "hub.db", tmp_path / "other.db"
    update = [("0" * 40, "1" * 40, "refs/heads/main")]
    Store(db).close()
    with Store(other) as store:
        store.record_updates("elsewhere.git", update, None, START)
    with group_commit(db):
        with Store(db) as store:
            first = store.conn
            store.record_updates("registry.git", update, None, START)
        seen: list[Any] = []

        def read() -> None:
            with Store(db) as store:
                seen.append((store.conn, [e.repo for e in store.events("registry.git")]))

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        assert seen == [(first, ["registry.git"])]  # the same connection, in another thread
        twice = Store(db)
        twice.close()
        twice.close()  # closing again hands nothing back a second time
        with pytest.raises(sqlite3.ProgrammingError):
            twice.events()  # nor does a closed Store read through a connection now another's
        with Store(db) as store, Store(db) as other_store:
            assert store.conn is not other_store.conn
        held = Store(db)  # open while the file is replaced: its connection is the old file's
        for leftover in (tmp_path / "hub.db-wal", tmp_path / "hub.db-shm"):
            leftover.unlink()  # the old file's (its open connections keep theirs)
        os.replace(other, db)  # the path now names another file
        held.close()  # not kept: it was opened on the old file
        with Store(db) as store:
            assert store.conn is not first
            assert [e.repo for e in store.events("elsewhere.git")] == ["elsewhere.git"]
            assert store.events("registry.git") == []
    with Store(db) as store:  # no writer: a connection of its own, as before
        assert store.conn is not first
