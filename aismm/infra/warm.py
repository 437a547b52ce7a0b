"""Warm sandbox workers: the check and agent programs imported once, one forked child per run.

A one-shot run (:func:`aismm.infra.sandbox.run`) starts util-linux's wrappers, a shell that
builds the view, then a fresh interpreter that imports the program: ~70 ms before the program
starts, ~300 ms for the reviewer. A resident ``aismm serve`` keeps a few *zygotes* instead
(:mod:`aismm.infra.zygote`): processes that have imported the programs and fork, for each run,
a child that enters exactly the isolation of the one-shot path. The caller's process keeps
every other duty of a run (the uid slot, ownership of the workdir, output caps, the timeout, the
leftovers sweep), so a warm run and a one-shot run differ only in how fast the program starts.

A zygote is recycled after :data:`JOBS_PER_WORKER` runs and replaced when the package's code
changes or it dies; when no zygote is free or none can start, the run takes the one-shot path.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from aismm.core.errors import SandboxError
from aismm.infra import sandbox

__all__ = ["JOBS_PER_WORKER", "Pool", "code_stamp", "default_size", "pool"]

JOBS_PER_WORKER = 200  # runs per zygote before it is replaced (bounded drift, bounded leaks)
_START_SECONDS = 20.0  # a zygote that is not ready by then is given up
_CONTROL_SECONDS = 10.0  # a zygote that does not answer a request by then is given up

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


# ---------------------------------------------------------------- the caller's side (serve)


class _Worker:
    """One zygote, seen from the caller: its process and its control socket."""

    def __init__(self, stamp: str) -> None:
        self.stamp, self.jobs, self.broken = stamp, 0, False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # the zygote's own stderr (why it did not start); closed in close() or wait_ready()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self.proc = subprocess.Popen(
                [sandbox.PYTHON, "-B", "-s", "-m", "aismm.infra.zygote", str(theirs.fileno())],
                cwd="/", env=sandbox.base_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.log, pass_fds=(theirs.fileno(),),
                start_new_session=True)
        except OSError:
            self.log.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    def wait_ready(self) -> None:
        """Wait until the zygote has imported the programs (OSError: it did not start)."""
        self.sock.settimeout(_START_SECONDS)
        try:
            ready = self.sock.recv(64)
        except OSError:
            ready = b""
        if not ready.startswith(b"ready"):
            self.sock.close()
            self.proc.kill()
            self.proc.wait()
            self.log.seek(0)
            why = self.log.read(1 << 16).decode(errors="replace").strip().splitlines()
            self.log.close()
            raise OSError(f"the warm worker did not start ({why[-1] if why else 'no answer'})")
        self.sock.settimeout(_CONTROL_SECONDS)

    def close(self) -> None:
        self.sock.close()  # the zygote exits when its control socket closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def execute(self, job: sandbox.Job, root: Path, env: dict[str, str],
                uid: int | None) -> sandbox.Result | None:
        """Run one job in a forked child; None when it could not be started (nothing ran)."""
        limits = job.limits
        request = json.dumps({
            "argv": job.argv, "workdir": str(job.workdir), "root": str(root),
            "view": sandbox.view(job, env), "env": env, "uid": uid,
            "rlimits": sandbox.rlimits(job, own_uid=True),
        }).encode()
        start = time.monotonic()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            try:
                socket.send_fds(self.sock, [request], [out_w, err_w])
            finally:
                os.close(out_w)
                os.close(err_w)
            answer = self.sock.recv(64).split()
            if answer[:1] != [b"pid"]:
                raise OSError(f"unexpected answer {answer!r}")
            pid = int(answer[1])
        except (OSError, ValueError, IndexError):
            self.broken = True
            os.close(out_r)
            os.close(err_r)
            return None
        self.jobs += 1
        status: list[int] = []

        def exited() -> None:
            status.extend(self._status())
            sandbox.kill_group(pid)  # leftovers; the unreaped child keeps the id ours

        try:
            streams, timed_out = sandbox.gather((out_r, err_r), self.sock.fileno(), exited,
                                                start + limits.timeout_seconds,
                                                limits.output_bytes)
        finally:
            os.close(out_r)
            os.close(err_r)
        sandbox.kill_group(pid)
        if not status:
            status.extend(self._status())
        with suppress(OSError):
            self.sock.send(b"reap")
        if not status:  # the zygote died under the run: the hub's fault, nothing is judged
            self.broken = True
            raise SandboxError("sandbox: the warm worker died during a run; "
                                       "check the host (serve falls back to one-shot runs)")
        code = None if timed_out else status[0]
        return sandbox.result(job, start, streams, timed_out, code, prelude=True)

    def _status(self) -> list[int]:
        try:
            answer = self.sock.recv(64).split()
        except OSError:
            return []
        if answer[:1] != [b"exit"]:
            return []
        return [int(answer[1])]


class Pool:
    """Warm workers for the sandbox of this process; install with :func:`pool`."""

    def __init__(self, size: int | None = None, jobs_per_worker: int = JOBS_PER_WORKER) -> None:
        self.size = default_size() if size is None else size
        self.jobs_per_worker = jobs_per_worker
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
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
                made.append(_Worker(stamp))
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

    def _acquire(self) -> _Worker | None:
        stamp = code_stamp()
        stale: list[_Worker] = []
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

    def _spawn(self, stamp: str) -> _Worker | None:
        """A new ready worker, already counted in ``_count`` (uncounted again if it fails)."""
        try:
            worker = _Worker(stamp)
            worker.wait_ready()
        except OSError as exc:
            with self._lock:
                self._count -= 1
                self.failures.append(str(exc))
            return None
        with self._lock:
            self.started += 1
        return worker

    def _release(self, worker: _Worker) -> None:
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
