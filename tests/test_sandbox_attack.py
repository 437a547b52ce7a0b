"""Attacks on the way a sandboxed run starts (the zygote) and on the forked unit-test runner.

Each test is an attack that once worked or that a change could reopen; the hostile code is real
and runs for real (one-shot, through a cold zygote).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aismm.core.errors import SandboxError
from aismm.infra import sandbox, warm
from aismm.infra.sandbox import PYTHON
from aismm.services import dod
from tests.dodkit import benchmark_checkout

MARK = "AISMM-SHADOW-RAN"


def _pth_imports() -> list[str]:
    """The modules the interpreter's .pth files import at start-up (an editable install's finder,
    setuptools' _distutils_hack, ...): each is looked up on sys.path while site runs."""
    names: set[str] = set()
    for pth in Path(sysconfig.get_paths()["purelib"]).glob("*.pth"):
        for line in pth.read_text(errors="replace").splitlines():
            if line.startswith(("import ", "import\t")):
                names.update(re.findall(r"import\s+([A-Za-z_][A-Za-z0-9_]*)", line))
                names.update(re.findall(r"__import__\('([A-Za-z_][A-Za-z0-9_]*)'\)", line))
    return sorted(names)


SHADOWS = ["sitecustomize", "usercustomize", *_pth_imports()]


@pytest.mark.parametrize("name", SHADOWS)
def test_a_workdir_module_never_runs_before_a_program_of_ours(name: str, tmp_path: Path) -> None:
    """A run may leave a file at the top of a workdir that a later check runs in (a test of the
    agent's writes into the checker's folder). Were site imported with the workdir on the path,
    that file would run inside the check process before the check, and could print its verdict
    and exit 0. A real ``python -m`` imports site before the folder is on the path."""
    (tmp_path / f"{name}.py").write_text(
        f"import os, sys\nos.write(2, b'{MARK}\\n')\nprint('ok: forged')\nos._exit(0)\n")
    (tmp_path / "zz-shadow.pth").write_text(f"import os; os.write(2, b'{MARK} pth\\n')\n")
    argv = [PYTHON, "-m", "aismm.checks.expect", "--help"]
    result = sandbox.run(argv, tmp_path)
    assert MARK not in result.stderr and "usage:" in result.stdout, result.stderr
    assert result.returncode == 0
    real = subprocess.run(argv, cwd=tmp_path, env={"PATH": "/usr/bin:/bin",
                                                   "PYTHONNOUSERSITE": "1"},
                          capture_output=True, text=True, check=False, timeout=60)
    assert MARK not in real.stderr and "usage:" in real.stdout  # the behaviour copied


# Standard modules a check imports after it starts (found by planting each one in turn): a run's
# folder on the module path, as `python -m` has it, would let any of them run inside the check.
LATE = ["_weakrefset", "argparse", "ast", "base64", "binascii", "bisect", "bz2", "collections",
        "contextlib", "copy", "copyreg", "ctypes", "dataclasses", "datetime", "decimal", "dis",
        "enum", "fractions", "functools", "gettext", "hashlib", "heapq", "hmac", "importlib",
        "inspect", "json", "keyword", "linecache", "locale", "lzma", "math", "numbers", "opcode",
        "operator", "platform", "pprint", "random", "re", "reprlib", "runpy", "secrets", "select",
        "selectors", "shutil", "signal", "struct", "tempfile", "textwrap", "threading", "token",
        "tokenize", "traceback", "typing", "unicodedata", "uuid", "warnings", "weakref",
        "zipfile", "zlib"]


@pytest.mark.parametrize("how", ["cold", "warm", "fresh", "rlimits-only"])
def test_no_module_a_run_left_in_its_folder_runs_inside_a_program_of_ours(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's tests, run by one check, may write anything into the checkout; the next check
    runs there. Each standard module it would import, planted there, prints a forged verdict and
    exits 0 if imported: the program of ours must run as itself, cold or warm, in-process or
    (a Python setting in its environment: "fresh") as a new interpreter, and without
    namespaces."""
    for name in [*LATE, *SHADOWS]:
        (tmp_path / f"{name}.py").write_text(
            f"import os\nos.write(2, b'{MARK} {name}\\n')\n"
            "os.write(1, b'{\"score\": 100}\\n')\nos._exit(0)\n")
    if how == "rlimits-only":
        monkeypatch.setenv("AISMM_SANDBOX", "rlimits-only")
    env = dod.python_env({"PYTHONWARNINGS": "default"} if how == "fresh" else None)
    runs = [[PYTHON, "-m", "aismm.checks.expect", "--help"],
            [PYTHON, "-m", "aismm.checks.expect", "unit_tests", "task", "deliverable"]]
    with warm.pool(size=1 if how == "warm" else 0) as workers:
        results = [sandbox.run(argv, tmp_path, env=env) for argv in runs * 2]
        assert workers.warm_runs == (4 if how == "warm" else 0)
    assert {r.isolation == "rlimits-only" for r in results} == {how == "rlimits-only"}
    for result in results:
        assert MARK not in result.stdout + result.stderr, result.stderr
        assert '"score": 100' not in result.stdout
    assert "usage:" in results[0].stdout and results[0].returncode == 0
    assert results[1].returncode != 0 or '"score": 0' in results[1].stdout, results[1]


def test_a_run_takes_str_subclasses_as_the_strings_they_are(tmp_path: Path) -> None:
    """The run goes to the zygote as plain strings: a caller's str subclass is not refused."""

    class Name(str):
        pass

    result = sandbox.run([Name("/bin/sh"), "-c", "echo $X"], tmp_path, env={Name("X"): Name("v")})
    assert (result.returncode, result.stdout) == (0, "v\n"), result.stderr


def _ignored(status: str) -> int:
    return int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]


def test_a_run_starts_with_the_signal_dispositions_of_a_fresh_process(tmp_path: Path) -> None:
    """The zygote ignores SIGINT; an ignored signal stays ignored across exec, so every run
    (and every process it starts) could not be interrupted, unlike under a fresh process."""
    result = sandbox.run(["/bin/sh", "-c", "cat /proc/self/status"], tmp_path)
    here = subprocess.run(["/bin/sh", "-c", "cat /proc/self/status"], capture_output=True,
                          text=True, check=True).stdout
    assert _ignored(result.stdout) & ~_ignored(here) == 0, result.stdout  # nothing more ignored


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process of this host."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rpartition(")")[2].split()[1]), cmdline)
    return found


def _kill_the_caller_mid_run(tmp_path: Path) -> tuple[Path, Path, list[int], str]:
    """SIGKILL a hub process while its run (with a setsid child) is under way; (workdir, the
    hub's TMPDIR, the zygote's pid, the run's sleep token)."""
    token = str(40_000 + os.getpid() % 10_000)  # a sleep length no other process uses
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    caller = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        from pathlib import Path
        from aismm.infra import sandbox
        sandbox.run(["/bin/sh", "-c", "setsid sleep {token} & echo up > started; sleep {token}"],
                    Path({str(work)!r}), limits=sandbox.Limits(timeout_seconds=600))
        """)], env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[2]),
                    "TMPDIR": str(tmp)})
    try:
        for _ in range(600):  # until the run has started (bounded: a broken start fails)
            if (work / "started").exists():
                break
            time.sleep(0.05)
        assert (work / "started").exists(), "the run never started"
        zygotes = [pid for pid, (ppid, cmd) in _processes().items()
                   if ppid == caller.pid and "aismm.infra.zygote" in cmd]
        sleeps = [pid for pid, (_, cmd) in _processes().items() if f"sleep {token}" in cmd]
        assert len(zygotes) == 1 and len(sleeps) >= 2
    finally:
        caller.kill()
        caller.wait()
    return work, tmp, zygotes, token


def test_a_caller_killed_mid_run_leaves_no_process(tmp_path: Path) -> None:
    """The cold zygote sees its control socket close and kills the run; its pid 1 dies and the
    namespace with it, setsid children included."""
    _, _, zygotes, token = _kill_the_caller_mid_run(tmp_path)
    left: list[int] = []
    for _ in range(200):  # the kernel kills the namespace at once; poll, do not wait it out
        left = [pid for pid, (_, cmd) in _processes().items()
                if f"sleep {token}" in cmd or pid in zygotes]
        if not left:
            break
        time.sleep(0.05)
    assert left == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the run's own uid exists only as root")
def test_a_caller_killed_mid_run_leaves_no_file_after_the_next_run(tmp_path: Path) -> None:
    """The killed caller's clean-up (give the workdir back, remove the view's root folder) is
    done by the next run on the machine, from what the caller wrote down in its private folder
    before the files changed hands."""
    work, tmp, _, token = _kill_the_caller_mid_run(tmp_path)
    runs = tmp / f"aismm-runs-{os.geteuid()}"
    left = sorted(p.name.partition("-")[2].partition("-")[0] for p in runs.iterdir())
    assert left == ["owners", "root"], left  # as the killed caller left them
    assert {p.lstat().st_uid for p in [work, *work.rglob("*")]} != {os.geteuid()}
    for _ in range(200):  # its run uid's processes die with the namespace; poll, do not wait
        if not [pid for pid, (_, cmd) in _processes().items() if f"sleep {token}" in cmd]:
            break
        time.sleep(0.05)
    nxt = tmp_path / "next"
    nxt.mkdir()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""\
        from pathlib import Path
        from aismm.infra import sandbox
        print(sandbox.run(["/bin/true"], Path({str(nxt)!r})).returncode)
        """)], env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[2]),
                    "TMPDIR": str(tmp)}, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout == "0\n", done.stdout + done.stderr
    assert {p.lstat().st_uid for p in [work, *work.rglob("*")]} == {os.geteuid()}
    assert (work / "started").read_text() == "up\n"  # given back, not removed
    assert list(runs.iterdir()) == []
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("aismm-root-")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only runs with their own uid (root) leave records")
def test_a_record_of_a_live_runs_uid_waits_for_that_run(tmp_path: Path) -> None:
    """A dead caller's record whose run uid another run holds now is left for a later sweep:
    the sweep never touches files while a live run may own that uid."""
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    work = tmp_path / "work"
    work.mkdir()
    dead = _dead_pid()
    uid = sandbox.UID_BASE + 4095
    record = runs / f"{dead}-owners-x.json"
    record.write_text(json.dumps({"uid": uid, "owners": [[str(work), 0, 0]], "readonly": []}))
    lock = os.open(sandbox._uid_locks() / "4095.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert sandbox.sweep_workspaces(runs) == []
        assert record.exists()
    finally:
        os.close(lock)
    forged = runs / f"{dead}-owners-y.json"  # a uid outside the run uids: never acted on
    forged.write_text(json.dumps({"uid": 0, "owners": [["/", 0, 0]], "readonly": []}))
    assert sandbox.sweep_workspaces(runs) == [record]
    assert not record.exists() and forged.exists()


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_a_zygote_killed_under_a_run_is_the_hubs_fault_not_a_verdict(tmp_path: Path) -> None:
    """The run's status comes only from the zygote: when it dies mid-run, the caller raises
    SandboxError (nothing is judged), never a Result with the dead run's exit status."""
    work = tmp_path / "work"
    work.mkdir()
    killed: list[int] = []

    def kill_the_zygote() -> None:
        for _ in range(600):
            if (work / "started").exists():
                break
            time.sleep(0.05)
        for pid, (ppid, cmd) in _processes().items():
            if ppid == os.getpid() and "aismm.infra.zygote" in cmd:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    killer = threading.Thread(target=kill_the_zygote)
    killer.start()
    try:
        with pytest.raises(SandboxError, match="zygote died"):
            sandbox.run(["/bin/sh", "-c", "echo up > started; exec sleep 300"], work,
                        limits=sandbox.Limits(timeout_seconds=120))
    finally:
        killer.join()
    assert len(killed) == 1


def test_a_zygote_that_cannot_start_fails_closed(tmp_path: Path) -> None:
    """An interpreter that dies before ``ready`` (here: one that cannot even import the zygote,
    its package path pointing nowhere) is SandboxError: the command never ran."""
    code = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from aismm.core.errors import SandboxError
        from aismm.infra import sandbox
        sandbox.capabilities()  # probed with the real package first
        sandbox.PACKAGE = Path({str(tmp_path)!r}) / "nowhere" / "aismm"
        try:
            sandbox.run(["/bin/sh", "-c", "echo ran > ran"], Path({str(tmp_path)!r}))
        except SandboxError as exc:
            print("SandboxError", exc)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[2])})
    assert done.stdout.startswith("SandboxError sandbox: "), done.stdout + done.stderr
    assert not (tmp_path / "ran").exists()


SCAN = textwrap.dedent('''\
    def test_scan():
        head, tail = b"aismm-secret-", b"9876543210"[::-1]  # never the whole token in memory
        found = []
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if perms.startswith("rw"):
                    lo, hi = (int(x, 16) for x in span.split("-"))
                    try:
                        mem.seek(lo)
                        data = mem.read(hi - lo)
                    except OSError:
                        continue
                    at = data.find(head)
                    while at >= 0:
                        found += [span] if data[at + 13:at + 23] == tail else []
                        at = data.find(head, at + 1)
        assert not found, found
    ''')


def test_a_warm_run_finds_nothing_of_the_previous_run_in_its_memory(tmp_path: Path) -> None:
    """Agent tests run in a fork of a check run in-process by a warm zygote that served other
    runs before: they scan all their writable memory for the previous run's environment."""
    contract = Path(__file__).resolve().parent.parent / "contracts" / "unit_tests"
    root = benchmark_checkout(contract, contract / "benchmark" / "money", tmp_path / "checkout",
                              golden=True)
    (root / "deliverable" / "test_module.py").write_text(SCAN)
    (root / "deliverable" / "report.json").unlink(missing_ok=True)
    token = "aismm-secret-" + "0123456789"
    argv = [PYTHON, "-m", "aismm.checks.run_tests", "--min-tests", "1"]
    with warm.pool(size=1) as pool:
        other = tmp_path / "other"
        other.mkdir()
        assert sandbox.run(["/bin/true"], other, env={"X_TOKEN": token}).returncode == 0
        clean = sandbox.run(argv, root, env=dod.python_env())
        control = sandbox.run(argv, root, env=dod.python_env({"X_TOKEN": token}))
        assert pool.warm_runs == 3
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "test_scan: fails: AssertionError" in control.stdout  # the scan does find it


def test_the_run_cannot_reach_the_host_through_its_pid_1(tmp_path: Path) -> None:
    """The run's pid 1 is the sandbox's own process: not chrooted, its root and folder are the
    host's. Through /proc/1 the run would see the whole host; it must be refused."""
    code = textwrap.dedent("""\
        import os
        for path in ("/proc/1/root", "/proc/1/cwd", "/proc/1/mem", "/proc/1/environ",
                     "/proc/1/map_files"):
            try:
                os.listdir(path) if path[-4:] in ("root", "/cwd", "iles") else open(path, "rb")
            except OSError as exc:
                print(path, "refused", exc.errno)
            else:
                print(path, "OPEN")
        """)
    result = sandbox.run([PYTHON, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OPEN" not in result.stdout and result.stdout.count("refused") == 5, result.stdout


def _hash_under_seed_zero(text: str) -> int:
    done = subprocess.run([PYTHON, "-c", f"print(hash({text!r}))"], check=True,
                          env={"PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    return int(done.stdout)


def test_a_program_of_ours_honours_the_interpreter_settings_of_its_environment(
        tmp_path: Path) -> None:
    """``python -m aismm.checks.X`` with PYTHONHASHSEED (or any PYTHON* setting read at start)
    in its environment must start as such an interpreter would: run in the zygote's process, it
    kept the zygote's hashing and ignored the setting. Seen from the agent's tests, which run in
    a fork of the check."""
    contract = Path(__file__).resolve().parent.parent / "contracts" / "unit_tests"
    root = benchmark_checkout(contract, contract / "benchmark" / "money", tmp_path / "checkout",
                              golden=True)
    (root / "deliverable" / "test_module.py").write_text(
        f"def test_hash():\n    assert hash('aismm') == {_hash_under_seed_zero('aismm')}\n")
    (root / "deliverable" / "report.json").unlink(missing_ok=True)
    result = sandbox.run([PYTHON, "-m", "aismm.checks.run_tests", "--min-tests", "1"], root,
                         env=dod.python_env({"PYTHONHASHSEED": "0"}))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_run_cannot_reach_the_cached_hook_client(tmp_path: Path) -> None:
    """Each new hub copies its native hook client from the hub user's cache, and every push
    execs that copy: a run that could write the cache would own every later hub's hooks. The
    run sees no home folder and no cache, so it can neither read nor replace the client."""
    from aismm.state import provision  # noqa: PLC0415 - only this attack needs it

    hub = tmp_path / "hub"
    assert provision.build_client(hub) is not None
    cache = provision._cache_dir()
    assert cache is not None
    [cached] = [p for p in cache.iterdir() if p.suffix != ".sha256"]
    before = cached.read_bytes(), cached.with_suffix(".sha256").read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    script = (f"cat '{cached}' > stolen 2>/dev/null; "
              f"printf '#!/bin/sh\\nexit 0\\n' > '{cached}' 2>/dev/null; "
              f"sha256sum '{cached}' 2>/dev/null > '{cached}.sha256'; "
              f"ls -d '{cache}' '{Path.home()}' 2>&1; exit 0")
    result = sandbox.run(["/bin/sh", "-c", script], work)
    assert result.returncode == 0, result.stderr
    assert (cached.read_bytes(), cached.with_suffix(".sha256").read_bytes()) == before
    assert not (work / "stolen").exists() or (work / "stolen").read_bytes() == b""
    assert result.stdout.count("No such file or directory") == 2, result.stdout  # neither
    assert provision.build_client(tmp_path / "next") is not None
    assert (tmp_path / "next" / provision.CLIENT).read_bytes() == before[0]


def test_a_run_cannot_plant_a_record_for_the_sweep(tmp_path: Path) -> None:
    """The sweep acts on ``<pid>-owners-*.json`` records in the caller's private runs folder
    (chown, kill): a run that could write one there would have the next run chown any folder to
    anyone. The run sees neither that folder nor its own root folder's host path."""
    runs = sandbox._runs_dir()
    dead = _dead_pid()
    planted = runs / f"{dead}-owners-planted.json"
    work = tmp_path / "work"
    work.mkdir()
    record = json.dumps({"uid": sandbox.UID_BASE + 1, "owners": [["/etc", 0, 0]], "readonly": []})
    script = (f"printf '%s' '{record}' > '{planted}' 2>/dev/null; "
              f"ls -d '{runs}' 2>&1; ls '{runs}' 2>&1 | grep -c root; exit 0")
    result = sandbox.run(["/bin/sh", "-c", script], work)
    assert result.returncode == 0, result.stderr
    assert not planted.exists()
    assert "No such file or directory" in result.stdout, result.stdout
    assert Path("/etc").stat().st_uid == 0
