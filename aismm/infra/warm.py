"""Warm sandbox workers: the check and agent programs imported once, one forked child per run.

Every namespace run goes through a zygote (:mod:`aismm.infra.zygote`). A one-shot run starts a
cold one for itself, which then imports the program in the run's own process: ~25 ms before the
program starts, ~250 ms more for the reviewer's imports. A resident ``aismm serve`` keeps a few
*warm* zygotes instead: processes that import each program the first time a run asks for it
(so a zygote holds only the programs the hub uses) and fork, for each run, a child that enters
exactly the same isolation. The caller's process keeps every other duty of a run (the
uid slot, ownership of the workdir, output caps, the timeout, the leftovers sweep), so a warm run
and a one-shot run differ only in how fast the program starts.

A zygote is recycled after :data:`JOBS_PER_WORKER` runs and replaced when the package's code
changes or it dies; when no zygote is free or none can start, the run takes the one-shot path.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aismm.infra import sandbox

__all__ = ["JOBS_PER_WORKER", "Pool", "code_stamp", "default_size", "pool"]

JOBS_PER_WORKER = 200  # runs per zygote before it is replaced (bounded drift, bounded leaks)

_STAMP_SECONDS = 1.0  # how long a code stamp is trusted before the files are looked at again
_stamp: tuple[float, str] = (-_STAMP_SECONDS, "")


def code_stamp() -> str:
    """A digest of the package's code (every ``.py`` file's path, size and mtime), looked at
    again at most once a second."""
    global _stamp
    now = time.monotonic()
    if now - _stamp[0] < _STAMP_SECONDS:
        return _stamp[1]
    digest = hashlib.sha256()
    for path in sorted(sandbox.PACKAGE.rglob("*.py")):
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    _stamp = (now, digest.hexdigest())
    return _stamp[1]


def default_size() -> int:
    """Workers per pool: ``AISMM_WARM_WORKERS`` (0: every run one-shot), else 2."""
    wanted = os.environ.get("AISMM_WARM_WORKERS", "")
    return max(0, int(wanted)) if wanted.isdigit() else 2


class Pool:
    """Warm workers for the sandbox of this process; install with :func:`pool`."""

    def __init__(self, size: int | None = None, jobs_per_worker: int = JOBS_PER_WORKER) -> None:
        self.size = default_size() if size is None else size
        self.jobs_per_worker = jobs_per_worker
        self._lock = threading.Lock()
        self._idle: list[sandbox.Zygote] = []
        self._count = 0
        self._closed = False
        self.started = 0  # zygotes started so far (figures and tests)
        self.warm_runs = 0  # runs answered by a zygote
        self.failures: list[str] = []  # why a zygote could not start (logged by serve)
        self._previous: sandbox.WarmRunner | None = None
        self._installed = False

    def start(self) -> None:
        """Start the workers now (at once), so the first run does not pay for their imports."""
        with self._lock:
            wanted = self.size - self._count
            self._count += wanted
        stamp = code_stamp()
        made = []
        for _ in range(wanted):
            try:
                made.append(sandbox.Zygote(stamp))
            except OSError as exc:
                self.failures.append(str(exc))
        ready = []
        for worker in made:
            try:
                worker.wait_ready()
                ready.append(worker)
            except OSError as exc:
                self.failures.append(str(exc))
        with self._lock:
            self._count -= wanted - len(ready)
            self.started += len(ready)
            self._idle += ready

    def execute(self, job: sandbox.Job, root: Path, env: dict[str, str],
                uid: int | None) -> sandbox.Result | None:
        """The job's result from a warm worker, or None to take the one-shot path."""
        worker = self._acquire()
        if worker is None:
            return None
        jobs = worker.jobs
        try:
            return worker.execute(job, root, env, uid)
        finally:
            if worker.jobs > jobs:  # it ran there (a view it could not build included)
                with self._lock:
                    self.warm_runs += 1
            self._release(worker)

    def install(self) -> list[str]:
        """Start the workers and route this process's sandboxed runs through them until
        :meth:`close`; why any worker could not start (those runs start one-shot)."""
        self._previous = sandbox.install_warm(self.execute)
        self._installed = True
        self.start()
        return list(self.failures)

    def close(self) -> None:
        """Stop routing runs here and stop every idle worker (a busy one stops when released)."""
        if self._installed:
            sandbox.install_warm(self._previous)
            self._installed = False
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def _acquire(self) -> sandbox.Zygote | None:
        stamp = code_stamp()
        stale: list[sandbox.Zygote] = []
        try:
            with self._lock:
                if self._closed:
                    return None
                while self._idle:
                    worker = self._idle.pop()
                    if worker.stamp == stamp and not worker.broken \
                            and worker.proc.poll() is None:
                        return worker
                    stale.append(worker)
                    self._count -= 1
                if self._count >= self.size:
                    return None  # all busy: one-shot rather than wait behind a long run
                self._count += 1
        finally:
            for worker in stale:
                worker.close()
        return self._spawn(stamp)

    def _spawn(self, stamp: str) -> sandbox.Zygote | None:
        """A new ready worker, already counted in ``_count`` (uncounted again if it fails)."""
        try:
            worker = sandbox.Zygote(stamp)
            worker.wait_ready()
        except OSError as exc:
            with self._lock:
                self._count -= 1
                self.failures.append(str(exc))
            return None
        with self._lock:
            self.started += 1
        return worker

    def _release(self, worker: sandbox.Zygote) -> None:
        retire = worker.broken or worker.jobs >= self.jobs_per_worker
        with self._lock:
            if not retire and not self._closed:
                self._idle.append(worker)
                return
            self._count -= 1
        worker.close()


@contextmanager
def pool(size: int | None = None, jobs_per_worker: int = JOBS_PER_WORKER) -> Iterator[Pool]:
    """Warm workers for every sandboxed run of this process while the block runs."""
    workers = Pool(size, jobs_per_worker)
    try:
        workers.install()
        yield workers
    finally:
        workers.close()
