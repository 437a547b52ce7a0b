"""The event outbox under failure: a killed worker's claims and poison events.

A claim names its process (host, boot, pid, start time): when that process is gone, the event is
free at once, whatever its lease says. An event whose handler raises anything is marked failed
with the reason and reported in one line; the events after it are still handled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.infra.store import EventRow, Store
from aismm.services import events, worker
from tests import clikit, hubkit
from tests.hubkit import Kit, findings

ROOT = Path(__file__).resolve().parent.parent
R = "refs/heads/attempts/bob"

# A worker that claims the oldest event, says which, then hangs until it is killed.
CLAIMER = """
import sys, time
from aismm.infra.store import Store, worker_id
with Store(sys.argv[1]) as store:
    event = store.claim(worker_id())
print(event.id if event else 0, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


def _delivery(kit: Kit) -> tuple[str, str, str]:
    """A fresh mission with bob's delivery landed (gate-judged, no hooks, logged as post-receive
    would, not yet processed): (repository name, old tip, new tip)."""
    created = kit.mission(("bob",), tier="T1")
    clone = kit.clone(created, "attempts/bob")
    old = clone.rev("HEAD")
    worker.process(kit.hub)  # start from an empty outbox (before the landing: processing
    clone.deliver(kit.key("bob"), findings())  # judges and logs any unlogged move it sees)
    clone.land("attempts/bob")
    return f"missions/{created.doc.id}.git", old, clone.rev("HEAD")


def _status(kit: Kit, event_id: int) -> EventRow:
    with Store(kit.hub.db_path) as store:
        return next(e for e in store.events() if e.id == event_id)


def test_an_event_claimed_by_a_killed_worker_is_reclaimed_at_once(
        kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    name, old, new = _delivery(kit)
    events.record(kit.hub, kit.hub.root / name, [(old, new, R)], "bob")
    child = subprocess.Popen([sys.executable, "-c", CLAIMER, str(kit.hub.db_path)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        claimed = int(child.stdout.readline())
        assert _status(kit, claimed).new == new

        # The worker is alive: its claim holds, and `aismm process` says so instead of
        # "nothing to do".
        busy = clikit.run(kit.hub.root, capsys, "process")
        assert busy.code == 0, busy.err
        assert f"1 event is being processed by pid {child.pid}; run again later" in busy.out
        assert _status(kit, claimed).status == "pending"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    # The worker is gone: the very next run handles the event (no lease to wait out).
    done = clikit.run(kit.hub.root, capsys, "process")
    assert done.code == 0, done.err
    assert "platform DoD on bob: " in done.out, done.out  # handled (PASS or FAIL alike)
    assert "being processed" not in done.out
    assert _status(kit, claimed).status == "done"


def test_a_poison_event_is_marked_failed_and_the_next_one_is_handled(
        kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    name, old, new = _delivery(kit)
    unknown = "de" * 20  # post-receive fed an id that is not in the repository
    with Store(kit.hub.db_path) as store:
        store.record_updates(name, [(old, unknown, R)], "bob", "2026-01-01T00:00:00Z")
        poison = store.max_event_id()
    events.record(kit.hub, kit.hub.root / name, [(old, new, R)], "bob")

    result = clikit.run(kit.hub.root, capsys, "process")
    assert result.code == 0, result.err
    failed = [line for line in result.out.splitlines() if "processing failed" in line]
    assert failed == [f"{name} {R}: processing failed (KeyError: '{unknown}'); event {poison} "
                      "marked failed"], result.out
    assert "platform DoD on bob: " in result.out, result.out
    assert _status(kit, poison).status == "failed"
    assert json.loads(str(_status(kit, poison).result))["error"] == f"KeyError: '{unknown}'"
    with Store(kit.hub.db_path) as store:  # the landed delivery (logged when it landed)
        [good] = store.event_ids(name, [(old, new, R)])
    assert _status(kit, good).status == "done"
    again = clikit.run(kit.hub.root, capsys, "process")  # failed stays failed: no retry loop
    assert again.out.strip() == "nothing to do"
