"""Run untrusted commands under resource limits, a scrubbed environment and file/network isolation.

Isolations, strongest first; ``run`` takes the first that :func:`capabilities` finds working:
``bwrap+uid-drop`` (root: bubblewrap with ``/`` read-only, private ``/tmp`` ``/dev`` ``/proc``, no
network, own pid namespace, then uid 65534 without capabilities), ``bwrap`` (the same, keeping the
caller's uid), ``uid-drop+netns`` and ``uid-drop`` (root without bubblewrap: uid 65534, with or
without an empty network namespace) and ``rlimits-only``. The wrappers are util-linux's ``prlimit``,
``setpriv`` and ``unshare``, so no Python code runs between fork and exec.
"""

from __future__ import annotations

import functools
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aismm.errors import UsageError

__all__ = ["ISOLATIONS", "SANDBOX_UID", "Limits", "Result", "capabilities", "run"]

ISOLATIONS = ("bwrap+uid-drop", "bwrap", "uid-drop+netns", "uid-drop", "rlimits-only")
SANDBOX_UID = 65534  # "nobody"; RLIMIT_NPROC counts every process of this uid on the machine
_DRAIN_SECONDS = 0.5  # how long output is still read after the command has exited
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command."""

    timeout_seconds: float = 60.0  # wall clock
    cpu_seconds: int = 60
    memory_bytes: int = 1 << 30  # address space (RLIMIT_AS)
    file_bytes: int = 64 << 20  # RLIMIT_FSIZE
    processes: int = 64  # RLIMIT_NPROC (only meaningful when running as a dedicated uid)
    output_bytes: int = 64 << 10  # stdout/stderr each are truncated to this (mark truncation)


@dataclass(frozen=True)
class Result:
    """What a sandboxed command did."""

    argv: tuple[str, ...]
    returncode: int | None  # negative: died of that signal; None: timed out or never started
    stdout: str
    stderr: str
    timed_out: bool
    killed: str | None  # "timeout" | "memory" | "cpu" | "signal N" | None
    duration_seconds: float
    truncated: bool
    isolation: str

    @property
    def ok(self) -> bool:
        """Whether the command exited 0 in time."""
        return self.returncode == 0 and not self.timed_out


def run(
    argv: Sequence[str],
    workdir: Path,
    *,
    limits: Limits = Limits(),
    env: Mapping[str, str] | None = None,
    readonly_paths: Sequence[Path] = (),
    writable_paths: Sequence[Path] = (),
    isolation: str | None = None,
) -> Result:
    """Run argv in workdir under the strongest isolation here, or the one named; never raises for it."""
    if not argv:
        raise UsageError("sandbox: empty argv; pass the command to run")
    if not Path(workdir).is_dir():
        raise UsageError(f"sandbox: workdir {workdir} is not a directory; prepare it first")
    for path in (*readonly_paths, *writable_paths):
        if not Path(path).exists():
            raise UsageError(f"sandbox: {path} does not exist; pass existing paths only")
    working = [name for name, works in capabilities().items() if works]
    if not working:
        raise UsageError("sandbox: no isolation works here; install util-linux (prlimit)")
    isolation = isolation or working[0]
    if isolation not in working:
        raise UsageError(
            f"sandbox: isolation {isolation!r} does not work here; use one of {working}"
        )
    readonly = tuple(Path(p).resolve() for p in readonly_paths)
    writable = tuple(Path(p).resolve() for p in writable_paths)
    argv = [str(a) for a in argv]
    return _run(
        _Job(argv, Path(workdir).resolve(), limits, dict(env or {}), readonly, writable, isolation)
    )


@functools.cache
def capabilities() -> dict[str, bool]:
    """Tell which isolations work on this machine, strongest first (probed once per process)."""
    root = os.geteuid() == 0
    have = {tool: shutil.which(tool) is not None for tool in ("bwrap", "setpriv", "unshare")}
    needs = {
        "bwrap+uid-drop": root and have["bwrap"] and have["setpriv"],
        "bwrap": have["bwrap"],
        "uid-drop+netns": root and have["setpriv"] and have["unshare"],
        "uid-drop": root and have["setpriv"],
        "rlimits-only": True,
    }
    found = {}
    with tempfile.TemporaryDirectory(prefix="aismm-probe-") as probe:
        for name in ISOLATIONS:
            job = _Job(
                ["/bin/sh", "-c", "exit 0"], Path(probe).resolve(), Limits(10), {}, (), (), name
            )
            found[name] = bool(shutil.which("prlimit")) and needs[name] and _run(job).ok
    return found


@dataclass(frozen=True)
class _Job:
    """A checked request: absolute paths and the isolation chosen."""

    argv: list[str]
    workdir: Path
    limits: Limits
    env: dict[str, str]
    readonly: tuple[Path, ...]
    writable: tuple[Path, ...]
    isolation: str


def _run(job: _Job) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="aismm-sandbox-")).resolve()
    drop, skip = "uid-drop" in job.isolation, set(job.readonly)
    owners = [(p, p.stat()) for p in (job.workdir, *job.writable)]
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        **job.env,
    }
    try:
        command = _wrappers(job) + job.argv
        if job.isolation.startswith("bwrap"):
            command = _bwrap(job, tmp, env) + command
        if drop:
            for path, st in [*owners, (tmp, tmp.stat())]:
                _chown_tree(path, st.st_uid, (SANDBOX_UID, SANDBOX_UID), skip, exclusive=True)
        return _execute(job, command, env)
    finally:
        if drop:
            for path, st in owners:
                _chown_tree(path, SANDBOX_UID, (st.st_uid, st.st_gid), skip, exclusive=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _wrappers(job: _Job) -> list[str]:
    """Build the unshare/setpriv/prlimit prefix; each execs the next, so signals reach us as is."""
    drop, limits = "uid-drop" in job.isolation, job.limits
    prefix = (
        [str(shutil.which("unshare")), "--net", "--"] if job.isolation.endswith("+netns") else []
    )
    if drop:
        prefix += [str(shutil.which("setpriv")), f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}"]
        prefix += [
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    wanted = [
        ("cpu", resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        ("as", resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        ("fsize", resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        ("core", resource.RLIMIT_CORE, 0, 0),
    ]
    if drop:  # without a uid of its own, every process of the caller's uid would count
        wanted.append(("nproc", resource.RLIMIT_NPROC, limits.processes, limits.processes))
    prefix.append(str(shutil.which("prlimit")))
    for name, which, soft, hard in wanted:
        ceiling = resource.getrlimit(which)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        prefix.append(f"--{name}={soft}:{hard}")
    return [*prefix, "--"]


def _bwrap(job: _Job, tmp: Path, env: Mapping[str, str]) -> list[str]:
    """Build the bubblewrap prefix: all read-only but workdir, tmp and writable; no network."""
    python = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    python.add(Path(sys.executable).resolve().parent)
    python.update(Path(p).resolve() for p in env.get("PYTHONPATH", "").split(":") if p)
    # readonly last, so a path both writable and readonly stays read-only
    binds = [("--ro-bind", p) for p in sorted(python) if p.exists()]
    binds += [("--bind", p) for p in (job.workdir, tmp, *job.writable)]
    binds += [("--ro-bind", p) for p in job.readonly]
    hidden = {a for _, p in binds if (a := _closed_ancestor(p)) is not None}
    parents = {a for _, p in binds for a in p.parents if a.parent != a}
    ops = [(p, ["--tmpfs", str(p)]) for p in sorted(hidden)]
    ops += [(p, ["--perms", "0755", "--dir", str(p)]) for p in sorted(parents)]  # not bwrap's 0700
    ops += [(p, [flag, str(p), str(p)]) for flag, p in binds]
    ops.sort(key=lambda op: len(op[0].parts))  # stable: outer first; per level tmpfs, dir, bind
    command = [str(shutil.which("bwrap")), "--die-with-parent", "--new-session", "--unshare-ipc"]
    command += ["--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    command += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    command += ["--perms", "1777", "--size", str(job.limits.memory_bytes), "--tmpfs", "/tmp"]
    for _, args in ops:
        command += args
    command += ["--chdir", str(job.workdir)]
    if "uid-drop" in job.isolation:  # for setpriv to change uid; it then drops every capability
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            command += ["--cap-add", cap]
    return [*command, "--"]


def _closed_ancestor(path: Path) -> Path | None:
    """Return the outermost strict ancestor of path that others cannot enter (a tmpfs hides it)."""
    return next((a for a in reversed(path.parents) if not os.stat(a).st_mode & stat.S_IXOTH), None)


def _chown_tree(
    top: Path, uid: int, to: tuple[int, int], skip: set[Path], *, exclusive: bool
) -> None:
    """Give what uid owns under top to ``to`` (uid, gid), never following symlinks or entering skip."""

    def move(name: str | Path, dir_fd: int | None) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        # a hard-linked file may also live outside top (git clone --local): leave it alone
        linked = exclusive and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1
        if st.st_uid == uid and not linked:
            os.chown(name, *to, dir_fd=dir_fd, follow_symlinks=False)

    move(top, None)
    for root, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
        dirs[:] = [d for d in dirs if Path(root, d) not in skip]
        for name in (*dirs, *files):
            move(name, fd)


def _execute(job: _Job, command: list[str], env: dict[str, str]) -> Result:
    start, limits = time.monotonic(), job.limits
    try:
        proc = subprocess.Popen(
            command,
            cwd=job.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        why = f"sandbox: cannot start {job.argv[0]}: {exc}\n"
        return Result(tuple(job.argv), None, "", why, False, None, 0.0, False, job.isolation)
    with proc:
        streams, timed_out = _collect(proc, start + limits.timeout_seconds, limits.output_bytes)
    code: int | None = None if timed_out else proc.returncode
    if code is not None and job.isolation.startswith("bwrap") and 128 < code <= 128 + 64:
        code = 128 - code  # bwrap reports death by signal N as exit status 128+N
    stdout, stderr = (_text(data, over, limits.output_bytes) for data, over in streams)
    return Result(
        argv=tuple(job.argv),
        returncode=code,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        killed=_killed(code, timed_out, stderr),
        duration_seconds=time.monotonic() - start,
        truncated=any(over for _, over in streams),
        isolation=job.isolation,
    )


def _collect(
    proc: subprocess.Popen[bytes], deadline: float, cap: int
) -> tuple[list[tuple[bytes, bool]], bool]:
    """Read stdout and stderr (cap bytes each, and whether more came) until exit or the deadline."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = (proc.stdout.fileno(), proc.stderr.fileno())
    kept = {fd: bytearray() for fd in streams}
    over = dict.fromkeys(streams, False)
    pidfd = os.pidfd_open(proc.pid)
    exited, until = False, deadline
    with selectors.DefaultSelector() as selector:
        for fd in (*streams, pidfd):
            selector.register(fd, selectors.EVENT_READ)
        while len(selector.get_map()) > (0 if exited else 1) and time.monotonic() < until:
            for key, _ in selector.select(until - time.monotonic()):
                if key.fd == pidfd:
                    exited, until = True, min(deadline, time.monotonic() + _DRAIN_SECONDS)
                    selector.unregister(pidfd)
                    _kill_group(proc.pid)  # leftovers; the unreaped leader keeps the id ours
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                room = max(0, cap - len(kept[key.fd]))
                over[key.fd] = over[key.fd] or len(chunk) > room
                kept[key.fd] += chunk[:room]
        if not exited:
            exited = bool(selector.select(max(0.0, deadline - time.monotonic())))
    os.close(pidfd)
    _kill_group(proc.pid)
    proc.wait()
    return [(bytes(kept[fd]), over[fd]) for fd in streams], not exited


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _text(data: bytes, truncated: bool, cap: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + f"\n[aismm sandbox: output truncated at {cap} bytes]\n" if truncated else text


def _killed(code: int | None, timed_out: bool, stderr: str) -> str | None:
    if timed_out:
        return "timeout"
    if code is not None and code < 0:
        return "cpu" if -code == signal.SIGXCPU else f"signal {-code}"
    if code and any(hint in stderr for hint in _MEMORY_HINTS):
        return "memory"
    return None
