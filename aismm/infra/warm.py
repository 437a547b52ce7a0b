"""Warm sandbox workers: the check and agent programs imported once, one forked child per run.

A one-shot run (:func:`aismm.infra.sandbox.run`) starts util-linux's wrappers, a shell that
builds the view, then a fresh interpreter that imports the program: ~70 ms before the program
starts, ~300 ms for the reviewer. A resident ``aismm serve`` keeps a few *zygotes* instead: plain
processes of the hub's user (``python -m aismm.infra.warm``) that have imported every module of
``aismm.checks`` and ``aismm.agents`` and run no code but ours. For each run a zygote forks a
child that establishes, by the same system calls the wrappers make, exactly the isolation of the
one-shot path::

    zygote ── fork ─ C: setsid; unshare(mount, pid, net, ipc, uts [, user: map root to the hub
                     │  user]); private mounts; every inherited descriptor closed but the run's
                     │  stdout and stderr
                     └ fork ─ P1, pid 1 of the run: builds the view (the ops of sandbox._view:
                              a tmpfs root, read-only binds, the workdir, /tmp, /proc, /dev, the
                              hidden paths covered), signals readiness, then
                              └ fork ─ J: chroot, chdir to the workdir, bounding set emptied, the
                                       run's uid (as root), capabilities cleared, no-new-privs,
                                       rlimits, scrubbed environment; then ``python -m
                                       aismm.{checks,agents}.<name>`` runs in-process (already
                                       imported), any other command is exec'd.

When J exits P1 exits with its status (128+N for a signal, as the shell prelude does), which
kills everything else in the run's pid namespace. The caller's process keeps every other duty of
a run (the uid slot, ownership of the workdir, output caps, the timeout, the leftovers sweep), so
a warm run and a one-shot run differ only in how fast the program starts.

A zygote is recycled after :data:`JOBS_PER_WORKER` runs and replaced when the package's code
changes; when no zygote is free or one cannot start, the run takes the one-shot path.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import importlib
import json
import os
import pkgutil
import resource
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from aismm.core.errors import SandboxError
from aismm.infra import sandbox

__all__ = ["JOBS_PER_WORKER", "Pool", "code_stamp", "default_size", "pool"]

JOBS_PER_WORKER = 200  # runs per zygote before it is replaced (bounded drift, bounded leaks)
PROGRAMS = ("aismm.checks", "aismm.agents")  # packages whose modules run in-process
_START_SECONDS = 20.0  # a zygote that is not ready by then is given up
_CONTROL_SECONDS = 10.0  # a zygote that does not answer a request by then is given up

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h, linux/capability.h)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = (
    1024, 2048, 4096, 16384, 1 << 18, 1 << 21)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
_CAP_VERSION_3 = 0x20080522
_LOCKED = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
           (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
           (os.ST_RELATIME, MS_RELATIME))
_MOUNT_WORDS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


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
                [sandbox.PYTHON, "-B", "-s", "-m", "aismm.infra.warm", str(theirs.fileno())],
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


# ---------------------------------------------------------------- the zygote's side

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), f"prctl {option}")


def _bind(path: str, target: str, flags: int) -> None:
    """``mount --bind -o <flags>``: a bind, then a remount that keeps the flags it must keep."""
    _mount(path, target, None, MS_BIND)
    locked = os.statvfs(target).f_flag
    flags |= sum(ms for st, ms in _LOCKED if locked & st)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def _tmpfs(target: str, options: str) -> None:
    words = options.split(",")
    flags = sum(_MOUNT_WORDS.get(w, 0) for w in words)
    _mount("aismm-tmp", target, "tmpfs", flags,
           ",".join(w for w in words if w not in _MOUNT_WORDS))


def _build_view(root: str, ops: list[str]) -> None:
    """What the shell prelude does between ``unshare`` and the command (same ops, same order)."""
    _mount("aismm-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    i = 0
    while i < len(ops):
        kind, path = ops[i], ops[i + 1]
        inside = root + path
        if kind == "dir":
            os.makedirs(inside, exist_ok=True)
        elif kind == "link":
            os.symlink(ops[i + 2], inside)
            i += 1
        elif kind == "tmpfs":
            os.makedirs(inside, exist_ok=True)
            _tmpfs(inside, ops[i + 2])
            i += 1
        elif kind == "proc":
            os.makedirs(inside, exist_ok=True)
            _mount("proc", inside, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind in ("ro", "rw", "dev"):
            if os.path.isdir(path):
                os.makedirs(inside, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(inside), exist_ok=True)
                os.close(os.open(inside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            _bind(path, inside, {"ro": MS_RDONLY | MS_NOSUID | MS_NODEV,
                                 "rw": MS_NOSUID | MS_NODEV, "dev": MS_NOSUID}[kind])
        else:
            raise OSError(errno.EINVAL, f"unknown op {kind}")
        i += 2


def _drop(uid: int | None) -> None:
    """What ``setpriv [--reuid --regid --clear-groups] --no-new-privs --inh-caps=-all
    --bounding-set=-all`` does, and what the exec after it does to the capability sets."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): none
    _check(_libc.capset(header, data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_DUMPABLE, 1)  # as after an exec: the run may read its own /proc/self


def _program(argv: list[str]) -> str | None:
    """The module to run in-process: ``{python} -m aismm.checks.X`` / ``aismm.agents.X``."""
    if len(argv) >= 3 and argv[0] == sandbox.PYTHON and argv[1] == "-m" \
            and argv[2].rpartition(".")[0] in PROGRAMS and argv[2] in sys.modules:
        return argv[2]
    return None


def _job(request: dict[str, Any]) -> int:
    """J: enter the view, drop everything, set the limits, then run the command."""
    argv: list[str] = request["argv"]
    os.chroot(request["root"])
    os.chdir(request["workdir"])
    _drop(request["uid"])
    for which, soft, hard in request["rlimits"]:
        resource.setrlimit(which, (soft, hard))
    os.environ.clear()
    os.environ.update(request["env"])
    module = _program(argv)
    if module is None:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # as a fresh process has them
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(argv[0], argv, request["env"])
        except OSError as exc:
            os.write(2, f"aismm sandbox: cannot run {argv[0]}: {exc.strerror}\n".encode())
            return 127
    sys.argv = [argv[2], *argv[3:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it
    del sys.modules[module]  # run afresh as __main__ (what it imports stays imported)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:  # as the interpreter reports an uncaught exception
        traceback.print_exc()
        code = 1
    return code


def _wait_status(pid: int) -> int:
    """The exit status the shell prelude reports: the code, or 128+N for signal N."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _child(request: dict[str, Any], out: int, err: int) -> int:
    """C: new namespaces, then P1 (pid 1 of the run) builds the view and starts J."""
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # nothing of the zygote
    userns = request["uid"] is None
    host_uid, host_gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags | (CLONE_NEWUSER if userns else 0)), "unshare")
    if userns:  # unshare --map-root-user
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {host_uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {host_gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    first = os.fork()
    if first:
        return _wait_status(first)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:  # P1
        _build_view(request["root"], request["view"])
    except OSError as exc:
        os.write(2, f"aismm sandbox: {exc}\n".encode())
        return 125
    os.write(2, sandbox.READY)
    job = os.fork()
    if job == 0:
        try:
            code = _job(request)
        except BaseException as exc:  # the run's fault line
            os.write(2, f"aismm sandbox: {exc}\n".encode(errors="replace"))
            code = 126
        _exit(code)
    return _wait_status(job)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


def _preload() -> None:
    """Import every program module (ours only: nothing an agent supplied)."""
    for package in PROGRAMS:
        with suppress(ImportError):
            base = importlib.import_module(package)
            for info in pkgutil.iter_modules(base.__path__):
                with suppress(Exception):
                    importlib.import_module(f"{package}.{info.name}")


def _serve_jobs(sock: socket.socket) -> None:
    """The zygote's loop: one job at a time, until the control socket closes."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        except OSError:
            return
        if not message:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                code = _child(request, *fds)
            except BaseException as exc:  # never back into the loop
                with suppress(OSError):
                    os.write(2, f"aismm sandbox: {exc}\n".encode(errors="replace"))
                code = 125
            _exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(f"pid {pid}".encode())
        if not _await(sock, pid):
            return


def _await(sock: socket.socket, pid: int) -> bool:
    """Report the child's exit (unreaped) and reap it when the caller says so; False: the
    caller is gone (the child's group is killed)."""
    pidfd = os.pidfd_open(pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            selector.register(sock, selectors.EVENT_READ)
            reported = False
            while True:
                for key, _ in selector.select():
                    if key.fd == pidfd and not reported:
                        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                        if info is None:  # not yet: the pidfd said it exited
                            continue
                        code = info.si_status if info.si_code == os.CLD_EXITED \
                            else -info.si_status
                        sock.send(f"exit {code}".encode())
                        selector.unregister(pidfd)
                        reported = True
                    elif key.fd == sock.fileno():
                        said = sock.recv(64)
                        if said == b"reap" or not said:
                            if not said:
                                with suppress(ProcessLookupError):
                                    os.killpg(pid, signal.SIGKILL)
                            os.waitpid(pid, 0)
                            return bool(said)
    finally:
        os.close(pidfd)


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    if sys.path and sys.path[0] in ("", "/", os.getcwd()):
        del sys.path[0]  # the zygote's folder ("/") is no module folder
    sock = socket.socket(fileno=fd)
    _preload()
    sys.path.insert(0, "")  # each run's own folder, as `python -m` has it (set in _job)
    sock.send(f"ready {os.getpid()}".encode())
    _serve_jobs(sock)


if __name__ == "__main__":
    main(int(sys.argv[1]))
