"""A zygote: ``python -S -c 'from aismm.infra.zygote import start; start()' FD [cold]``, the one
way a namespace run starts.

Started by :class:`aismm.infra.sandbox.Zygote` as a plain process of the hub's user, with the
scrubbed environment and nothing of the hub in it. A *warm* zygote (kept by
:mod:`aismm.infra.warm` for ``aismm serve``) imports a module of ``aismm.checks`` or
``aismm.agents`` (the hub's own code: nothing an agent supplied) the first time a run asks for
it, and keeps it for the runs after; a *cold* one (``cold``: the one-shot path, one run) imports
only the standard library it needs. Either says ``ready`` on the
control socket FD, then serves one run at a time. For each run it forks a child that
establishes the isolation by system calls::

    zygote ── fork ─ C: setsid; unshare(mount, pid, net, ipc, uts [, user: map root to the hub
                     │  user]); private mounts; every inherited descriptor closed but the run's
                     │  stdout and stderr
                     └ fork ─ P1, pid 1 of the run: builds the view (the ops of sandbox.view:
                              a tmpfs root, read-only binds, the workdir, /tmp, /proc, /dev, the
                              hidden paths covered), signals readiness, then
                              └ fork ─ J: chroot, chdir to the workdir, bounding set emptied, the
                                       run's uid (as root), capabilities cleared, no-new-privs,
                                       rlimits, scrubbed environment; then ``python -m
                                       aismm.{checks,agents}.<name>`` runs in-process (imported
                                       already by a warm zygote), any other command is exec'd.

When J exits P1 exits with its status (128+N for a signal, as a shell reports it), which
kills everything else in the run's pid namespace. The zygote reports C's pid, then its exit
status, and reaps C only when the caller says so (so the caller may kill C's process group
without racing a reused pid). It exits when the control socket closes.

Protocol on the control socket (SOCK_SEQPACKET): the caller sends the run (a dict of strings,
lists, ints and None, in :mod:`marshal`'s format: the hub and its zygote run the same
interpreter, and only the hub writes to this private socket) with the run's stdout and stderr
write ends attached (SCM_RIGHTS); the zygote answers ``pid N``, later ``exit S`` (S: the
status, or -N for a signal); the caller sends ``reap``.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import marshal
import os
import resource
import select
import sys

# Standard library only, and as little of it as a run needs: a cold zygote's start-up is part
# of every one-shot run (``json``, ``selectors``, ``socket``, ``signal``, ``contextlib`` and
# ``-m``'s ``runpy`` would pull in ``re`` and ``enum``, ~20 ms of CPU: so the C modules under
# them). What only the in-process programs or a warm zygote need is imported where it is used;
# site-packages too (the zygote starts with ``-S``; see :func:`_site`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    import _signal as signal  # the C module (``signal`` itself imports enum)

__all__ = ["PROGRAMS", "PYTHON", "READY", "main", "safe_path", "start"]

PROGRAMS = ("aismm.checks", "aismm.agents")  # packages whose modules run in-process
PYTHON = os.path.abspath(sys.executable)  # the hub's interpreter, as checks and agents run it
READY = b"\x1eaismm-sandbox-ready\n"  # said by the run's pid 1 just before the command starts

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


class _Suppress:
    """``contextlib.suppress``, without contextlib's imports (see the note on imports)."""

    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.kinds)


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    """The C library (loaded once, when a run first needs it: importing this module is free)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_c().mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_c().prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
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
    """Build the run's root at ``root`` from the ops of ``sandbox.view``, in their order."""
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
    last = int(_read("/proc/sys/kernel/cap_last_cap"))
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): none
    _check(_c().capset(header, data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_DUMPABLE, 1)  # as after an exec: the run may read its own /proc/self


def _program(argv: list[str], env: dict[str, str]) -> str | None:
    """The module to run in-process: ``{python} -m aismm.checks.X`` / ``aismm.agents.X`` (a
    module of ours, imported already by a warm zygote, found on this process's own path by a
    cold one), when the run's module path is this process's own."""
    if _ours(argv) and env.get("PYTHONPATH") == os.environ.get("PYTHONPATH") \
            and not any(k.startswith("PYTHON") and k not in _SAME_START for k in env) \
            and (argv[2] in sys.modules or _found(argv[2])):
        return argv[2]
    return None


def safe_path(argv: list[str]) -> list[str]:
    """``{python} -m aismm.checks.X`` / ``aismm.agents.X`` started as a fresh interpreter gets
    ``-P``: like a run in-process, it never has the run's folder on its module path (see
    :func:`_job`). Any other command is left as it is."""
    return [argv[0], "-P", *argv[1:]] if _ours(argv) else argv


def _ours(argv: list[str]) -> bool:
    """Whether ``argv`` is ``{python} -m`` a module of :data:`PROGRAMS`."""
    return len(argv) >= 3 and argv[0] == PYTHON and argv[1] == "-m" \
        and argv[2].rpartition(".")[0] in PROGRAMS


# The interpreter settings a run's environment may hold and still run in-process: what this
# process was started with (PYTHONPATH, compared above) or does as well (-B, -s). Any other
# PYTHON* variable (PYTHONHASHSEED, PYTHONWARNINGS, PYTHONIOENCODING, ...) is read only when an
# interpreter starts, so such a run gets a fresh one (exec), as the command says.
_SAME_START = frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE"})


def _found(module: str) -> bool:
    import importlib.util  # noqa: PLC0415 - only a cold zygote looks a program up

    return importlib.util.find_spec(module) is not None


_site_added = False  # site-packages are on this process's path


def _site() -> None:
    """Add site-packages, as a normal interpreter start does (the zygote starts with ``-S``,
    so a run that executes a command never pays for it). Called while the current folder is
    not on the path, as at a normal start."""
    global _site_added
    if not sys.flags.no_site or _site_added:
        return
    import site  # noqa: PLC0415 - see the docstring

    site.main()
    _site_added = True


def _job(request: dict[str, Any]) -> int:
    """J: enter the view, drop everything, set the limits, then run the command."""
    argv: list[str] = request["argv"]
    os.chroot(request["root"])
    os.chdir(request["workdir"])
    _drop(request["uid"])
    for which, soft, hard in request["rlimits"]:
        resource.setrlimit(which, (soft, hard))
    module = _program(argv, request["env"])
    os.environ.clear()
    os.environ.update(request["env"])
    # the zygote ignores SIGINT (the hub's ^C is the caller's to handle); the run starts with it
    # as a fresh process does: default, and KeyboardInterrupt in a program of ours
    signal.signal(signal.SIGINT, signal.SIG_DFL if module is None else signal.default_int_handler)
    if module is None:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # as a fresh process has them
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(argv[0], safe_path(argv), request["env"])
        except OSError as exc:
            os.write(2, f"aismm sandbox: cannot run {argv[0]}: {exc.strerror}\n".encode())
            return 127
    import runpy  # noqa: PLC0415 - only a run of a program of ours needs it
    import traceback  # noqa: PLC0415 - idem

    # The run's folder is never on the module path, as with `python -P -m` (the folder holds
    # what earlier runs wrote: an agent's tests run by one check could leave a json.py,
    # sitecustomize.py or a module a .pth imports there, which would run inside the next check
    # and print its verdict). A program that imports from a folder of the run says which (the
    # unit-test child: inputs/).
    _site()
    sys.argv = [argv[2], *argv[3:]]
    sys.modules.pop(module, None)  # run afresh as __main__ (what it imports stays imported)
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
    """The exit status as a shell reports it: the code, or 128+N for signal N."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _child(request: dict[str, Any], out: int, err: int, zygote: int) -> int:
    """C: new namespaces, then P1 (pid 1 of the run) builds the view and starts J."""
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:  # the zygote died before the death signal was armed
        return 125
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # nothing of the zygote
    userns = request["uid"] is None
    host_uid, host_gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_c().unshare(flags | (CLONE_NEWUSER if userns else 0)), "unshare")
    if userns:  # unshare --map-root-user
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {host_uid} 1")
        _write("/proc/self/gid_map", f"0 {host_gid} 1")
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
    os.write(2, READY)
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
        with _Suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


def _import_program(request: dict[str, Any]) -> None:
    """A warm zygote's import of the run's program, the first time a run asks for it: the
    child forked next, and every later one, find it imported. Only a module :func:`_program`
    accepts (one of ours in :data:`PROGRAMS`, on this process's own path: nothing an agent
    supplied; a run's folder is never on the path, see main())."""
    # whatever goes wrong here happens again in the run's own process, as on a cold start
    with _Suppress(Exception):
        name = _program(request["argv"], request["env"])
        if name is not None and name not in sys.modules:
            __import__(name)


def _receive(sock: _socket.socket) -> tuple[bytes, list[int]]:
    """One message and the descriptors attached to it (what ``socket.recv_fds`` does)."""
    message, ancillary, _flags, _addr = sock.recvmsg(1 << 20, _socket.CMSG_LEN(2 * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder)
                    for i in range(0, len(data) - len(data) % 4, 4)]
    return message, fds


def _serve_jobs(sock: _socket.socket, *, warm: bool) -> None:
    """The zygote's loop: one job at a time, until the control socket closes."""
    while True:
        try:
            message, fds = _receive(sock)
        except OSError:
            return
        if not message:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return
        request = marshal.loads(message)
        if warm:
            _import_program(request)
        sys.stdout.flush()
        sys.stderr.flush()
        zygote = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                code = _child(request, fds[0], fds[1], zygote)
            except BaseException as exc:  # never back into the loop
                with _Suppress(OSError):
                    os.write(2, f"aismm sandbox: {exc}\n".encode(errors="replace"))
                code = 125
            _exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(f"pid {pid}".encode())
        if not _await(sock, pid):
            return


def _await(sock: _socket.socket, pid: int) -> bool:
    """Report the child's exit (unreaped) and reap it when the caller says so; False: the
    caller is gone (the child's group is killed)."""
    pidfd = os.pidfd_open(pid)
    try:
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        poll.register(sock.fileno(), select.POLLIN)
        reported = False
        while True:
            for fd, _event in poll.poll():
                if fd == pidfd and not reported:
                    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                    if info is None:  # not yet: the pidfd said it exited
                        continue
                    code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                    sock.send(f"exit {code}".encode())
                    poll.unregister(pidfd)
                    reported = True
                elif fd == sock.fileno():
                    said = sock.recv(64)
                    if said == b"reap" or not said:
                        if not said:
                            with _Suppress(ProcessLookupError):
                                os.killpg(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        return bool(said)
    finally:
        os.close(pidfd)


def main(fd: int, *, warm: bool = True) -> None:
    """Serve runs on the control socket ``fd``. A warm zygote imports each program the first
    time a run asks for it (:func:`_import_program`); a cold one (``warm=False``, one run of
    the one-shot path) imports a program only in the run's own process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    if sys.path and sys.path[0] in ("", "/", os.getcwd()):
        # the zygote's folder ("" for -c: "/") is no module folder, and no run's folder (the
        # current one once a run's process is in it) is ever put on the path (see _job)
        del sys.path[0]
    sock = _socket.socket(fileno=fd)
    if warm:
        _site()
    sock.send(f"ready {os.getpid()}".encode())
    _serve_jobs(sock, warm=warm)


def start() -> None:
    """The process's entry (``-c``, not ``-m``, which would import ``runpy``): ``FD [cold]``."""
    main(int(sys.argv[1]), warm=sys.argv[2:] != ["cold"])


if __name__ == "__main__":
    start()
