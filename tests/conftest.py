"""Shared fixtures: the session runs cut off from the user's git config and $HOME.

The isolation is set once for the whole session (:func:`_isolated_session`), before any fixture
of any scope builds anything, and undone when the session ends. Each test still gets its own
``tmp_path``; :func:`_no_leaked_environment` puts back (and reports) any change a test or its
fixtures made to ``os.environ`` without undoing it, so nothing leaks from one test to the next.
"""

from __future__ import annotations

import compileall
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: git's isolation: no user or system configuration, a fixed author and committer.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    """Apply the session's isolation through ``mp`` (undone when ``mp`` is)."""
    mp.setenv("HOME", str(home))
    # the user's shell must not point the code under test elsewhere: its git settings, and every
    # AISMM_* variable (the hub, the clock, the sandbox, the warm workers, the hook's shortcuts)
    for key in list(os.environ):
        if (key.startswith("GIT_") and key not in GIT_ENV) or key.startswith("AISMM_") \
                or key == "REMOTE_USER":
            mp.delenv(key)
    for key, value in GIT_ENV.items():
        mp.setenv(key, value)


def _tmpfs_with_room(path: Path, room: int = 2 << 30) -> bool:
    """Whether ``path`` is a writable tmpfs mount with ``room`` bytes free."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        stat = os.statvfs(path)
    except OSError:
        return False
    tmpfs = any(line.split()[1:3] == [str(path), "tmpfs"] for line in mounts)
    return tmpfs and os.access(path, os.W_OK | os.X_OK) and stat.f_bavail * stat.f_frsize >= room


def pytest_configure(config: pytest.Config) -> None:
    """Put the run's temporary folders on ``/dev/shm`` when it is a tmpfs with room.

    Tests make some 200,000 files and folders (git repositories, hubs, ledgers); on a disk, making
    and removing them and the ledgers' fsyncs were a third of the suite's time. The files are as
    real on tmpfs; only a power cut, which no test simulates, would tell the two apart. A
    ``PYTEST_DEBUG_TEMPROOT`` or ``--basetemp`` of your own wins; passing tests' folders are
    removed as they end (``tmp_path_retention_policy`` in pyproject.toml), failing ones kept.
    """
    shm = Path("/dev/shm")
    if ("PYTEST_DEBUG_TEMPROOT" not in os.environ and config.option.basetemp is None
            and _tmpfs_with_room(shm)):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)
    # PYTHONDONTWRITEBYTECODE (some machines set it) also stops pytest from keeping the test
    # modules it rewrote for its assert reports: each worker of each run rewrote them all, ~3 s
    # of its start. They are kept while the tests are collected; the tests run as configured.
    if sys.dont_write_bytecode:
        sys.dont_write_bytecode = False
        config.stash[_DONT_WRITE] = True
        # ... and every process the tests start (hooks, the CLI, agents and checks in the
        # sandbox) would compile each module it imports from source, ~25 ms a program run: the
        # package's bytecode is written once here, as `pip install .` writes it at install.
        if not hasattr(config, "workerinput"):  # beside the workers' start, not before it
            threading.Thread(target=compileall.compile_dir, args=(ROOT / "aismm",),
                             kwargs={"quiet": 2}, daemon=True).start()
    _rewrite_my_share(config)
    # A run started in the background by a shell without job control (``cmd &`` in a script)
    # inherits SIGINT ignored, and so would every `aismm serve` the tests stop with SIGINT as
    # Ctrl-C would: give SIGINT its usual meaning back (children then start with the default).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _rewrite_my_share(config: pytest.Config) -> None:
    """On a clean clone, every worker rewrote the asserts of every test module at once (pytest
    keeps the result beside each module, but all of them found it missing): ~2 s of CPU each.
    Each worker now first writes the rewritten bytecode of its own share of the modules, as
    pytest's import hook would, and finds the others' written when it collects them. Only a
    shortcut: a module missed here, or a pytest whose internals differ, is rewritten on import."""
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not worker.startswith("gw") or count < 2 or sys.dont_write_bytecode:
        return
    try:
        from _pytest.assertion import rewrite  # pytest's own cache format

        state = config.stash[rewrite.assertstate_key]
        files = sorted(p for p in Path(__file__).parent.rglob("test_*.py")
                       if "__pycache__" not in p.parts)
        index = int(worker[2:])
        for fn in files[len(files) * index // count:len(files) * (index + 1) // count]:
            cache = rewrite.get_cache_dir(fn)
            pyc = cache / (fn.name[:-3] + rewrite.PYC_TAIL)
            if pyc.exists() or not rewrite.try_makedirs(cache):
                continue
            source, code = rewrite._rewrite_test(fn, config)
            rewrite._write_pyc(state, code, source, pyc)
    except Exception:  # pytest's import hook does the work instead
        pass


_DONT_WRITE = pytest.StashKey[bool]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.stash.get(_DONT_WRITE, False):
        sys.dont_write_bytecode = True


#: Test files handed out first, longest first (their summed seconds, measured): a long file
#: handed out last keeps the whole run waiting for it alone. The first of them builds the shared
#: templates (:func:`reference_hub`, :func:`settle_template`, tests/orchkit.py) while the next
#: two, which need none, run beside it. The other files follow, most tests first.
FIRST = ("test_orch_run.py", "test_gate.py", "test_plain_git.py", "test_settlement.py",
         "test_readme_walkthrough.py", "test_import.py", "test_assessment.py", "test_serve.py",
         "test_warm.py", "test_sandbox.py", "test_warm_sandbox.py", "test_orch_crash.py",
         "test_reviewer_assessment.py", "test_http_concurrency.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files as :data:`FIRST` says (pytest-xdist hands them out in this order:
    ``--no-loadscope-reorder`` in pyproject.toml); a file's tests keep their order."""
    tests = Path(__file__).parent
    counts: dict[Path, int] = {}
    for item in items:
        counts[item.path] = counts.get(item.path, 0) + 1

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.relative_to(tests).as_posix()
        return (FIRST.index(name) if name in FIRST else len(FIRST), -counts[item.path])

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: nothing to do without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than the CPUs this process may use.

    A test spends about a third of its time waiting for the processes it starts (git and its
    hooks, ``aismm serve``, sandbox runs) and for their sockets; with one worker per CPU those
    waits left the CPUs idle. On this project's 2-CPU machine three workers ran the suite 9 to
    15% faster than two (paired runs), and four no faster than three. A count of your own in
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` wins, as pytest-xdist documents.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    return len(os.sched_getaffinity(0)) + 1



@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp_path_factory.mktemp("home"))
        # The code under test makes its temporary folders (every sandbox run's workspace among
        # them) under $TMPDIR: give it the session's own, beside the tests' folders (on tmpfs,
        # see pytest_configure), not the machine's /tmp, where some 1,000 runs' workspaces
        # made and removed inodes on disk and any left behind would outlive the run.
        mp.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))
        mp.setattr(tempfile, "tempdir", None)  # found again from TMPDIR, as a new process would
        yield


def _environment() -> dict[str, str]:
    """``os.environ`` but for the variable pytest itself rewrites at every phase of a test."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def _no_leaked_environment(_isolated_session: None) -> Iterator[None]:
    before = _environment()
    yield
    after = _environment()
    if after == before:
        return
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for key in changed:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    pytest.fail(f"the test left os.environ changed (now put back): {', '.join(changed)}",
                pytrace=False)


def _built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
                build: Callable[[Path], object]) -> Path:
    """The folder ``name`` built by ``build`` once per test run, shared by every worker.

    Under pytest-xdist each worker is a session of its own; the template is built by whichever
    worker asks first, under a lock in the run's shared temporary folder, and the others wait
    for it and use the same (read-only) copy. A serial run builds it in its own temporary folder.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target, done = shared / name / "hub", shared / name / "built"
    (shared / name).mkdir(exist_ok=True)
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if target.exists():  # a worker died building it: start again
                shutil.rmtree(target)
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session")
def reference_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub with the reference agents registered and assessed, built once per test run.

    Read-only: tests take a copy (:func:`tests.hubkit.copy_hub`), never the template itself.
    """
    from tests.hubkit import build_reference_hub

    return _built_once(tmp_path_factory, "reference", build_reference_hub)


@pytest.fixture(scope="session")
def settle_template(reference_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The settlement and lifecycle tests' hub (tests/settlekit.py), built once per test run."""
    from tests.settlekit import build_template

    return _built_once(tmp_path_factory, "settle",
                       lambda dest: build_template(reference_hub, dest))


def git(*args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run the real git binary."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          env=full_env)
