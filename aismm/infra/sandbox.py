"""Run untrusted commands in a private view of the machine, under limits, as nobody in particular.

Every run gets new mount, pid, network, ipc and uts namespaces and a root
built from scratch on a tmpfs: ``/usr`` and ``/etc`` read-only, the interpreter and the ``aismm``
package read-only, the run's workdir (and ``writable_paths``) read-write, a private ``/tmp``,
``/proc`` and a minimal ``/dev`` — nothing else of the host, so never the hub, its keys or another
run. Isolations, strongest first; ``run`` takes the first that :func:`capabilities` finds working:

``namespaces+uid``  root: the namespaces above, then a uid of the run's own (never shared with
                    another run), no capabilities, no-new-privs
``namespaces``      not root, user namespaces allowed: the same, in a user namespace that maps
                    the caller to root without any capability
``rlimits-only``    no isolation at all; used only when asked for (``AISMM_SANDBOX=rlimits-only``)

Every namespace run goes through a *zygote* (:mod:`aismm.infra.zygote`, driven by
:class:`Zygote`): a fresh interpreter of the hub's user that forks the run's child, which makes the
system calls (unshare, mounts, chroot, uid, capabilities, rlimits) and whose own child, pid 1 of
the run, stays as the namespace's first process: when the command ends, every process left in the
run dies with it. A one-shot run starts a cold zygote for itself (:func:`_cold`); ``aismm serve``
keeps warm ones that have imported the check and agent programs (:mod:`aismm.infra.warm`). Both
build the same view by the same calls. ``rlimits-only`` runs the command under util-linux's
``prlimit``. When the view cannot be set up, or no isolation works, the fault is the hub's:
:class:`SandboxError`, never a result.
"""

from __future__ import annotations

import fcntl
import functools
import json
import marshal
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import aismm
from aismm.core.errors import SandboxError, UsageError
from aismm.infra.zygote import PYTHON, READY, safe_path

__all__ = [
    "ISOLATIONS",
    "PYTHON",
    "Limits",
    "Result",
    "capabilities",
    "isolation",
    "run",
    "workspace",
]

ISOLATIONS = ("namespaces+uid", "namespaces", "rlimits-only")
UID_BASE = 2_100_000_000  # run uids: UID_BASE + slot, each held by one run at a time
UID_SLOTS = 4096
_DRAIN_SECONDS = 0.5  # how long output is still read after the command has exited
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")
_SYSTEM = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")
PACKAGE = Path(aismm.__file__).resolve().parent
_START_SECONDS = 20.0  # a zygote that is not ready by then is given up
_CONTROL_SECONDS = 10.0  # a zygote that does not answer a request by then is given up
_RUNS = "aismm-runs"  # $TMPDIR/aismm-runs-<uid>/<pid>-<random>: one folder per workspace


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command."""

    timeout_seconds: float = 60.0  # wall clock
    cpu_seconds: int = 60
    memory_bytes: int = 1 << 30  # address space (RLIMIT_AS); also the size of the private /tmp
    file_bytes: int = 64 << 20  # RLIMIT_FSIZE
    processes: int = 64  # RLIMIT_NPROC, counted per run (its own uid or user namespace)
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



def _tool(name: str) -> str | None:
    """A system tool's real path: a PATH entry may be a link into a folder the sandbox's
    private root does not show (e.g. a PATH folder of links); the file it names is there."""
    found = shutil.which(name)
    if not found:
        return None
    real = os.path.realpath(found)  # kept only when it is the same tool (not busybox, dash)
    return real if os.path.basename(real) == name else found

def run(
    argv: Sequence[str],
    workdir: Path,
    *,
    limits: Limits = Limits(),
    env: Mapping[str, str] | None = None,
    readonly_paths: Sequence[Path] = (),
    writable_paths: Sequence[Path] = (),
    hidden_paths: Sequence[Path] = (),
    isolation: str | None = None,
) -> Result:
    """Run argv in workdir under the strongest isolation here, or the one named.

    A failing, hanging or crashing command is a :class:`Result`; a sandbox that cannot be set up
    raises :class:`SandboxError` (the hub's fault); caller mistakes raise :class:`UsageError`.
    ``hidden_paths`` (e.g. the hub) are covered by an empty tmpfs should they lie in the view.
    """
    if not argv:
        raise UsageError("sandbox: empty argv; pass the command to run")
    if not Path(workdir).is_dir():
        raise UsageError(f"sandbox: workdir {workdir} is not a directory; prepare it first")
    for path in (*readonly_paths, *writable_paths):
        if not Path(path).exists():
            raise UsageError(f"sandbox: {path} does not exist; pass existing paths only")
    chosen = _choose(isolation)
    job = Job(
        argv=[str(a) for a in argv],  # plain strings, as the zygote's wire format takes them
        workdir=Path(workdir).resolve(),
        limits=limits,
        env={str(k): str(v) for k, v in (env or {}).items()},
        readonly=tuple(Path(p).resolve() for p in readonly_paths),
        writable=tuple(Path(p).resolve() for p in writable_paths),
        hidden=tuple(Path(p).resolve() for p in hidden_paths),
        isolation=chosen,
    )
    return _run(job)


def isolation() -> str:
    """The isolation ``run`` uses here by default (raises SandboxError when none may be used)."""
    return _choose(None)


def _choose(requested: str | None) -> str:
    if requested is not None and requested not in ISOLATIONS:
        raise UsageError(f"sandbox: unknown isolation {requested!r}; use one of {ISOLATIONS}")
    caps = capabilities()
    if requested is not None:
        if not caps[requested]:
            working = [name for name, works in caps.items() if works]
            raise SandboxError(
                f"sandbox: isolation {requested!r} does not work here; use one of {working}"
            )
        return requested
    wanted = os.environ.get("AISMM_SANDBOX", "")
    if wanted:
        return _choose(wanted)
    for name in ISOLATIONS[:-1]:
        if caps[name]:
            return name
    level = ISOLATIONS[0] if os.geteuid() == 0 else ISOLATIONS[1]
    raise SandboxError(
        f"sandbox: no isolation works here ({level}: {_probe_errors().get(level, '?')});"
        " run as root or allow user namespaces (sysctl kernel.unprivileged_userns_clone=1),"
        " or set AISMM_SANDBOX=rlimits-only to run agent code unconfined"
    )


@functools.cache
def capabilities() -> dict[str, bool]:
    """Which isolations run this interpreter here, strongest first (probed once per process)."""
    return {name: name not in _probe_errors() for name in ISOLATIONS}


@functools.cache
def _probe_errors() -> dict[str, str]:
    """Why each isolation that does not work fails, probed once per machine and interpreter.

    The result is kept in ``$TMPDIR/aismm-probe-<uid>.json`` keyed by everything it depends on
    (interpreter, package folder, uid, kernel, tools); a key that changed probes again. A
    working level is still checked by every run (a view that cannot be built is a SandboxError).
    """
    key = _probe_key()
    cache = Path(tempfile.gettempdir(), f"aismm-probe-{os.geteuid()}.json")
    try:
        st = cache.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key and isinstance(saved.get("errors"), dict):
                return {str(k): str(v) for k, v in saved["errors"].items()}
    except (OSError, ValueError):
        pass
    errors = _probe()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".aismm-probe-", dir=cache.parent)
        with os.fdopen(fd, "w") as out:
            json.dump({"key": key, "errors": errors}, out)
        os.replace(tmp, cache)
    except OSError:
        pass  # no cache: the next process probes again
    return errors


def _probe_key() -> str:
    prlimit = _tool("prlimit")
    stamps = [f"{prlimit}:{os.stat(prlimit).st_mtime_ns}" if prlimit else "-"]
    real = os.stat(os.path.realpath(PYTHON))
    return "|".join([PYTHON, f"{real.st_mode:o}:{real.st_mtime_ns}", str(PACKAGE),
                     str(os.geteuid()), os.uname().release, os.environ.get("AISMM_SANDBOX", ""),
                     *stamps])


def _probe() -> dict[str, str]:
    """Run the real interpreter under each isolation; why each one that fails does."""
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="aismm-probe-") as probe:
        for name in ISOLATIONS:
            if name == "rlimits-only" and _tool("prlimit") is None:
                errors[name] = "missing prlimit (install util-linux)"
                continue
            if name == "namespaces+uid" and os.geteuid() != 0:
                errors[name] = "needs root"
                continue
            if name == "namespaces" and os.geteuid() == 0:  # mapped root would be host root
                errors[name] = "not for root; root uses namespaces+uid"
                continue
            job = Job([PYTHON, "-c", "import aismm"], Path(probe).resolve(), Limits(20),
                       {}, (), (), (), name)
            try:
                result = _run(job, one_shot=True)  # a cold zygote, as every one-shot run
            except SandboxError as exc:
                errors[name] = str(exc)
                continue
            if not result.ok:
                lines = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
                errors[name] = lines[-1]
    return errors


@dataclass(frozen=True)
class Job:
    """A checked request: absolute paths and the isolation chosen."""

    argv: list[str]
    workdir: Path
    limits: Limits
    env: dict[str, str]
    readonly: tuple[Path, ...]
    writable: tuple[Path, ...]
    hidden: tuple[Path, ...]
    isolation: str


def base_env() -> dict[str, str]:
    """The environment every run starts from (the caller's ``env`` and the level are added)."""
    return {
        "PATH": f"{Path(PYTHON).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": str(PACKAGE.parent),
    }


# A warm runner (aismm.infra.warm): runs a job in an already-started worker with the same
# isolation, or returns None when it cannot take the job (then the one-shot path runs it).
WarmRunner = Callable[[Job, Path, dict[str, str], "int | None"], "Result | None"]
_warm: WarmRunner | None = None


def install_warm(runner: WarmRunner | None) -> WarmRunner | None:
    """Route namespace runs of this process through ``runner`` (None: one-shot only); returns
    the runner installed before."""
    global _warm
    previous, _warm = _warm, runner
    return previous


def _run(job: Job, *, one_shot: bool = False) -> Result:
    """Run a checked job (``one_shot``: never through a warm worker, as the probe runs)."""
    env = {**base_env(), **job.env, "AISMM_SANDBOX": job.isolation}
    if job.isolation == "rlimits-only":
        with tempfile.TemporaryDirectory(prefix="aismm-home-") as home:
            env = {**env, "HOME": home, "TMPDIR": home}
            return _unconfined(job, [*_prlimit(job, own_uid=False), *safe_path(job.argv)], env)
    runs = _runs_dir()
    sweep_workspaces(runs)  # what a killed run left: its root folder, files it still owns
    with _run_uid(job.isolation == "namespaces+uid") as uid:
        # the view's root folder and the owners to give back live in this process' private
        # folder, named by its pid: if this process is killed, the next run puts them right
        root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-root-", dir=runs))
        owners = [(p, (st := p.stat()).st_uid, st.st_gid)
                  for p in (job.workdir, *job.writable)] if uid is not None else []
        record = _record_owners(runs, uid, owners, job.readonly) if uid is not None else None
        pruned: list[str] = []
        try:
            if uid is not None:
                for path, owner, _group in owners:
                    _chown_tree(path, owner, (uid, uid), set(job.readonly), exclusive=True)
            warm = _warm(job, root, env, uid) if _warm is not None and not one_shot else None
            result = warm or _cold(job, root, env, uid)
        finally:
            if uid is not None:
                _kill_uid(uid)
            pruned = _give_back(uid, owners, (job.workdir, *job.writable), job.readonly)
            if record is not None:
                record.unlink(missing_ok=True)
            with suppress(OSError):
                root.rmdir()
    if not pruned:
        return result
    note = (f"\n[aismm sandbox: the run left folders nested deeper than {MAX_DEPTH} levels "
            f"({', '.join(pruned[:3])}); they were removed]\n")
    return replace(result, returncode=result.returncode or 1, stderr=result.stderr + note,
                   killed=result.killed or "tree")


MAX_DEPTH = 64  # folder levels a run may leave behind; deeper trees are the agent's fault


def _give_back(uid: int | None, owners: Sequence[tuple[Path, int, int]],
               written: Sequence[Path], readonly: Sequence[Path]) -> list[str]:
    """After a run (its uid's processes gone): prune what it nested too deep in ``written``,
    then give what ``uid`` owns under each owner path back to (uid, gid); what was pruned."""
    pruned: list[str] = []
    for path in written:  # before any walk of what the run left
        pruned += _prune_deep(path)
    for path, to_uid, to_gid in owners:
        _chown_tree(path, uid or 0, (to_uid, to_gid), set(readonly), exclusive=False)
    return pruned


def _record_owners(runs: Path, uid: int, owners: Sequence[tuple[Path, int, int]],
                   readonly: Sequence[Path]) -> Path:
    """Write down, before a run's files change hands, what :func:`_give_back` needs should this
    process die mid-run (``<pid>-owners-*.json`` in its private folder; see sweep_workspaces)."""
    fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-owners-", suffix=".json", dir=runs)
    with os.fdopen(fd, "w") as out:
        json.dump({"uid": uid, "owners": [[str(p), u, g] for p, u, g in owners],
                   "readonly": [str(p) for p in readonly]}, out)
    return Path(name)


def _restore_owners(record: Path) -> bool:
    """Finish the clean-up of a run whose process died (its ``-owners-`` record): kill what its
    uid still runs, prune, give its files back, drop the record. False, leaving the record for
    a later sweep, while another run holds that uid (its lock) or the record is unreadable."""
    try:
        data = json.loads(record.read_text())
        uid = int(data["uid"])
        owners = [(Path(p), int(u), int(g)) for p, u, g in data["owners"]]
        readonly = [Path(p) for p in data["readonly"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not UID_BASE <= uid < UID_BASE + UID_SLOTS:
        return False
    fd = _take_slot(uid - UID_BASE)
    if fd is None:
        return False  # a live run holds this uid now: its own clean-up comes first
    try:
        _kill_uid(uid)
        present = [o for o in owners if o[0].is_dir() and not o[0].is_symlink()]
        _give_back(uid, present, [p for p, _u, _g in present], readonly)
        record.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)  # releases the lock


def _cold(job: Job, root: Path, env: dict[str, str], uid: int | None) -> Result:
    """The one-shot path: a fresh zygote that imports nothing of ours but itself serves this
    one run, by the same system calls as a warm one (so both paths share one isolation)."""
    try:
        zygote = Zygote(cold=True)
        zygote.wait_ready()
    except OSError as exc:
        raise SandboxError(f"sandbox: cannot start the sandbox's first process ({exc});"
                           " check the interpreter and namespace support") from exc
    try:
        done = zygote.execute(job, root, env, uid)
    finally:
        zygote.close()
    if done is None:
        raise SandboxError(f"sandbox: cannot set up {job.isolation} isolation (the zygote did"
                           " not take the run); check namespace support")
    return done


def _prune_deep(top: Path) -> list[str]:
    """Remove whatever lies MAX_DEPTH or more folder levels under top; what was removed.

    GNU find walks a tree of any depth without recursing or hitting path-length limits (the
    Python walks after it, the chown back and the workspace's removal, then stay shallow).
    """
    if not _deeper_than(top, MAX_DEPTH - 1):
        return []
    find = _tool("find") or "find"
    deep = subprocess.run([find, str(top), "-mindepth", str(MAX_DEPTH), "-maxdepth",
                           str(MAX_DEPTH), "-print", "-quit"], capture_output=True, check=False)
    if not deep.stdout.strip():
        return []
    subprocess.run([find, str(top), "-mindepth", str(MAX_DEPTH), "-delete"],
                   capture_output=True, check=False)
    shown = os.fsdecode(deep.stdout.strip())
    return [shown if len(shown) < 120 else shown[:57] + "…" + shown[-60:]]


def _deeper_than(top: Path, levels: int) -> bool:
    """Whether anything may lie more than ``levels`` levels under top (walked by folder handles,
    never deeper than that, so a tree of any depth is cheap to ask about; a tree too wide or
    unreadable to walk this way says True, and find walks it)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        stack = [(os.open(top, flags), 0)]
    except OSError:
        return False
    try:
        while stack:
            fd, depth = stack.pop()
            try:
                with os.scandir(fd) as scan:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in scan]
                if entries and depth >= levels:
                    return True  # something lies at depth levels + 1
                folders = [name for name, is_dir in entries if is_dir]
                if len(stack) + len(folders) > 256:
                    return True  # too wide to hold open: let find walk it
                for name in folders:
                    stack.append((os.open(name, flags, dir_fd=fd), depth + 1))
            except OSError:
                return True  # unreadable here: let find decide
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return False


def view(job: Job, env: Mapping[str, str]) -> list[str]:
    """The ops that build the run's root: system, interpreter, package, /tmp, workdir, hidden."""
    ops = [(path, list(args)) for path, args in _system_view(env.get("PYTHONPATH", ""))]
    tmp_options = f"mode=1777,nosuid,nodev,size={job.limits.memory_bytes}"
    ops.append((Path("/tmp"), ["tmpfs", "/tmp", tmp_options]))
    ops.append((Path("/proc"), ["proc", "/proc"]))
    ops.append((Path("/dev"), ["tmpfs", "/dev", "mode=0755,nosuid,size=64k"]))
    ops += [(Path("/dev", d), ["dev", f"/dev/{d}"]) for d in _DEVICES if Path("/dev", d).exists()]
    ops.append((Path("/dev/fd"), ["link", "/dev/fd", "/proc/self/fd"]))
    ops += [(p, ["rw", str(p)]) for p in (job.workdir, *job.writable)]
    ops += [(p, ["ro", str(p)]) for p in job.readonly]  # after writable: read-only wins
    ops.sort(key=lambda op: len(op[0].parts))  # stable: outer first
    # hidden last, so whatever was bound over or under them is covered
    ops += [(p, ["tmpfs", str(p), "mode=0755,size=4k"]) for p in job.hidden if _in_view(p, ops)]
    return [arg for _, args in ops for arg in args]


@functools.lru_cache(maxsize=16)
def _system_view(pythonpath: str) -> tuple[tuple[Path, tuple[str, ...]], ...]:
    """The view's system folders and the interpreter's (the same for every run of a process)."""
    ops: list[tuple[Path, tuple[str, ...]]] = []
    for name in _SYSTEM:
        host = Path("/", name)
        if host.is_symlink():
            ops.append((host, ("link", str(host), os.readlink(host))))
        elif host.is_dir():
            ops.append((host, ("ro", str(host))))
    python = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), PACKAGE,
              Path(PYTHON).parent, Path(PYTHON).resolve().parent}
    python.update(Path(p).resolve() for p in pythonpath.split(":")
                  if p and Path(p).resolve() != PACKAGE.parent)
    system = tuple(Path("/", n) for n in _SYSTEM)
    for path in sorted(python):
        if path.exists() and not any(path == s or s in path.parents for s in system):
            ops.append((path, ("ro", str(path))))
    return tuple(ops)


def _in_view(path: Path, ops: list[tuple[Path, list[str]]]) -> bool:
    """Whether path lies in (or is) something bound into the view."""
    return any(args[0] in ("ro", "rw") and (bound == path or bound in path.parents)
               for bound, args in ops)


def rlimits(job: Job, *, own_uid: bool) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for each limit of the run, capped by this process's own."""
    limits = job.limits
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if own_uid:  # counted per run uid, or per user namespace; without either it would be global
        wanted.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    out = []
    for which, soft, hard in wanted:
        ceiling = resource.getrlimit(which)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        out.append((which, soft, hard))
    return out


_PRLIMIT_NAMES = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "as",
                  resource.RLIMIT_FSIZE: "fsize", resource.RLIMIT_CORE: "core",
                  resource.RLIMIT_NPROC: "nproc"}


def _prlimit(job: Job, *, own_uid: bool) -> list[str]:
    prefix = [str(_tool("prlimit") or "prlimit")]
    prefix += [f"--{_PRLIMIT_NAMES[which]}={soft}:{hard}"
               for which, soft, hard in rlimits(job, own_uid=own_uid)]
    return [*prefix, "--"]


def _uid_locks() -> Path:
    """The folder of the run uids' lock files (one per slot, held with flock by its run)."""
    locks = Path("/run/aismm-sandbox") if Path("/run").is_dir() else Path(tempfile.gettempdir(),
                                                                         "aismm-sandbox-uids")
    locks.mkdir(mode=0o700, exist_ok=True)
    return locks


def _take_slot(slot: int) -> int | None:
    """Lock run uid slot ``slot`` (flock on its lock file) without waiting: the open
    descriptor, whose closing releases it, or None while another run holds the slot."""
    fd = os.open(_uid_locks() / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def _run_uid(wanted: bool) -> Iterator[int | None]:
    """Hold a uid no other run holds (a locked slot), cleared of any process before and after."""
    if not wanted:
        yield None
        return
    start = random.randrange(UID_SLOTS)
    for step in range(UID_SLOTS):
        slot = (start + step) % UID_SLOTS
        fd = _take_slot(slot)
        if fd is None:
            continue
        try:
            uid = UID_BASE + slot
            _kill_uid(uid)
            yield uid
            return
        finally:
            os.close(fd)  # releases the lock
    raise SandboxError(f"sandbox: all {UID_SLOTS} run uids are busy; wait for runs to finish")


def processes_of(uid: int) -> list[int]:
    """Pids of the processes whose real or effective uid is uid."""
    found, wanted = [], str(uid).encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry.name}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            status = os.read(fd, 8192)  # one read: the kernel writes the file whole
        except OSError:
            continue
        finally:
            os.close(fd)
        start = status.find(b"\nUid:")
        if start >= 0 and wanted in status[start:status.find(b"\n", start + 1)].split()[1:3]:
            found.append(int(entry.name))
    return found


def _kill_uid(uid: int) -> None:
    """Kill every process of uid and make sure none is left."""
    for _ in range(50):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    raise SandboxError(f"sandbox: processes of run uid {uid} survive SIGKILL; check the host")


def _chown_tree(
    top: Path, uid: int, to: tuple[int, int], skip: set[Path], *, exclusive: bool
) -> None:
    """Give what uid owns under top to ``to`` (uid, gid); never follow symlinks or enter skip."""

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


def _unconfined(job: Job, command: list[str], env: dict[str, str]) -> Result:
    """``rlimits-only``: the command under ``prlimit``, as the hub's user, in its own session."""
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
        if proc.stdout is None or proc.stderr is None:
            raise SandboxError("sandbox: the command's output is not captured")
        pidfd = os.pidfd_open(proc.pid)
        try:  # at exit, kill the leftovers; the unreaped leader keeps the id ours
            streams, timed_out = gather((proc.stdout.fileno(), proc.stderr.fileno()), pidfd,
                                        lambda: kill_group(proc.pid),
                                        start + limits.timeout_seconds, limits.output_bytes)
        finally:
            os.close(pidfd)
        kill_group(proc.pid)
        proc.wait()
    code: int | None = None if timed_out else proc.returncode
    return result(job, start, streams, timed_out, code, namespaced=False)


def result(job: Job, start: float, streams: list[tuple[bytes, bool]], timed_out: bool,
           code: int | None, *, namespaced: bool) -> Result:
    """The run's Result from its output and exit status (``namespaced``: the status and stderr
    come through the run's pid 1, which signals readiness and reports signals as 128+N)."""
    limits = job.limits
    (out, out_over), (err, err_over) = streams
    if namespaced:
        if not err.startswith(READY):
            if timed_out:
                raise SandboxError("sandbox: the isolation did not come up in time; check the host")
            said = err.decode(errors="replace").strip().splitlines()
            raise SandboxError(f"sandbox: cannot set up {job.isolation} isolation"
                               f" ({said[-1] if said else f'exit {code}'});"
                               " check namespace support")
        err = err[len(READY):]
    if code is not None and namespaced and 128 < code <= 128 + 64:
        code = 128 - code  # pid 1 reports death by signal N as exit status 128+N
    stdout = _text(out, out_over, limits.output_bytes)
    stderr = _text(err, err_over, limits.output_bytes)
    return Result(
        argv=tuple(job.argv),
        returncode=code,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        killed=_killed(code, timed_out, stderr),
        duration_seconds=time.monotonic() - start,
        truncated=out_over or err_over,
        isolation=job.isolation,
    )


def gather(streams: tuple[int, int], exit_fd: int, on_exit: Callable[[], None],
           deadline: float, cap: int) -> tuple[list[tuple[bytes, bool]], bool]:
    """Read stdout and stderr (cap bytes each, and whether more came) until the run exits
    (``exit_fd`` readable; ``on_exit`` is called once then) or the deadline; whether it
    timed out."""
    kept = {fd: bytearray() for fd in streams}
    over = dict.fromkeys(streams, False)
    room_extra = {streams[0]: 0, streams[1]: len(READY)}
    exited, until = False, deadline
    with selectors.DefaultSelector() as selector:
        for fd in (*streams, exit_fd):
            selector.register(fd, selectors.EVENT_READ)
        while len(selector.get_map()) > (0 if exited else 1) and time.monotonic() < until:
            for key, _ in selector.select(until - time.monotonic()):
                if key.fd == exit_fd:
                    exited, until = True, min(deadline, time.monotonic() + _DRAIN_SECONDS)
                    selector.unregister(exit_fd)
                    on_exit()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                room = max(0, cap + room_extra[key.fd] - len(kept[key.fd]))
                over[key.fd] = over[key.fd] or len(chunk) > room
                kept[key.fd] += chunk[:room]
        if not exited:
            exited = bool(selector.select(max(0.0, deadline - time.monotonic())))
            if exited:
                on_exit()
    return [(bytes(kept[fd]), over[fd]) for fd in streams], not exited


def kill_group(pgid: int) -> None:
    """SIGKILL a process group, if any of it is left."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


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


@contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A fresh folder for one run's files, removed afterwards; leftovers of dead processes too.

    Every workspace lives in ``$TMPDIR/aismm-runs-<uid>/<pid>-<random>``, so a folder whose
    process is gone (a killed worker) is recognised and removed by the next run.
    """
    runs = _runs_dir()
    sweep_workspaces(runs)
    path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{prefix}", dir=runs))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _runs_dir() -> Path:
    """This user's folder of workspaces, private to it (refused if someone else made it)."""
    runs = Path(tempfile.gettempdir(), f"{_RUNS}-{os.geteuid()}")
    runs.mkdir(mode=0o700, exist_ok=True)
    st = runs.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxError(f"sandbox: {runs} is not a private folder of this user; remove it")
    return runs


def sweep_workspaces(runs: Path | None = None) -> list[Path]:
    """Remove workspaces whose process no longer exists; the folders removed."""
    runs = runs or _runs_dir()
    removed = []
    try:
        entries = list(os.scandir(runs))
    except FileNotFoundError:
        return []
    for entry in entries:
        pid, _, rest = entry.name.partition("-")
        if pid.isdigit() and not Path("/proc", pid).exists():
            if rest.startswith("owners-"):  # a run's files still to give back
                if not _restore_owners(Path(entry.path)):
                    continue
            else:
                shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


class Zygote:
    """A zygote (:mod:`aismm.infra.zygote`) seen from the caller: its process and its control
    socket. Warm (the default) it serves many runs, importing each program the first time a
    run asks for it (:mod:`aismm.infra.warm`); cold it serves the one run of the one-shot path."""

    def __init__(self, stamp: str = "", *, cold: bool = False) -> None:
        self.stamp, self.jobs, self.broken = stamp, 0, False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # the zygote's own stderr (why it did not start); closed in close() or wait_ready()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self.proc = subprocess.Popen(
                [PYTHON, "-B", "-S", "-s", "-c", "from aismm.infra.zygote import start; start()",
                 str(theirs.fileno()), *(["cold"] if cold else [])],
                cwd="/", env={**base_env(), "PYTHONHASHSEED": "0"}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.log, pass_fds=(theirs.fileno(),),
                start_new_session=True)
        except OSError:
            self.log.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    def wait_ready(self) -> None:
        """Wait until the zygote says it is ready (OSError: it did not start)."""
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

    def execute(self, job: Job, root: Path, env: dict[str, str],
                uid: int | None) -> Result | None:
        """Run one job in a forked child; None when it could not be started (nothing ran)."""
        limits = job.limits
        request = marshal.dumps({  # the zygote's wire format (aismm.infra.zygote)
            "argv": job.argv, "workdir": str(job.workdir), "root": str(root),
            "view": view(job, env), "env": env, "uid": uid,
            "rlimits": rlimits(job, own_uid=True),
        })
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
            kill_group(pid)  # leftovers; the unreaped child keeps the id ours

        try:
            streams, timed_out = gather((out_r, err_r), self.sock.fileno(), exited,
                                                start + limits.timeout_seconds,
                                                limits.output_bytes)
        finally:
            os.close(out_r)
            os.close(err_r)
        kill_group(pid)
        if not status:
            status.extend(self._status())
        with suppress(OSError):
            self.sock.send(b"reap")
        if not status:  # the zygote died under the run: the hub's fault, nothing is judged
            self.broken = True
            raise SandboxError("sandbox: the zygote died during a run; check the host")
        code = None if timed_out else status[0]
        return result(job, start, streams, timed_out, code, namespaced=True)

    def _status(self) -> list[int]:
        try:
            answer = self.sock.recv(64).split()
        except OSError:
            return []
        if answer[:1] != [b"exit"]:
            return []
        return [int(answer[1])]
