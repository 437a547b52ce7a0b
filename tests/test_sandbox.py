"""The sandbox against real, hostile subprocesses: limits, environment, files, network, forks."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm import sandbox
from aismm.errors import UsageError
from aismm.sandbox import Limits, run

AVAILABLE = [name for name, works in sandbox.capabilities().items() if works]
BEST = AVAILABLE[0]
PROTECTING = [name for name in AVAILABLE if name != "rlimits-only"]
BWRAP = [name for name in AVAILABLE if name.startswith("bwrap")]
NET_ISOLATED = [name for name in AVAILABLE if name.startswith("bwrap") or name.endswith("+netns")]
UID_DROP = [name for name in AVAILABLE if "uid-drop" in name]
PY = sys.executable
BASH = shutil.which("bash") or "/bin/bash"
BUSY = "while :; do :; done"


def _python_reachable() -> bool:
    with tempfile.TemporaryDirectory() as work:
        return run([PY, "-c", "pass"], Path(work)).ok


needs_python = pytest.mark.skipif(
    not _python_reachable(),
    reason=f"the sandbox ({BEST}) cannot reach {PY}; install bubblewrap (apt-get install bubblewrap)",
)


@pytest.fixture
def area() -> Iterator[Path]:
    """A world-traversable scratch area with a 'hub' (mode 0755) and a 'work' checkout."""
    top = Path(tempfile.mkdtemp(prefix="aismm-sandbox-test-"))
    top.chmod(0o755)
    (top / "hub").mkdir(mode=0o755)
    (top / "hub" / "ref").write_text("original\n")
    (top / "work").mkdir(mode=0o755)
    yield top
    shutil.rmtree(top)


def _sandbox_processes(marker: str) -> list[int]:
    """Pids whose command line contains marker."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait_gone(marker: str, seconds: float = 3.0) -> list[int]:
    """Wait until no process carries marker; return the survivors (killed before returning)."""
    deadline = time.monotonic() + seconds
    while (left := _sandbox_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_capabilities_lists_every_isolation_strongest_first() -> None:
    caps = sandbox.capabilities()
    assert tuple(caps) == sandbox.ISOLATIONS
    assert caps["rlimits-only"] is True
    assert caps["uid-drop"] is (os.geteuid() == 0)
    if shutil.which("bwrap"):
        assert caps["bwrap"], "bwrap is installed but does not work here"


def test_exit_code_and_output_propagate(tmp_path: Path) -> None:
    result = run(["/bin/sh", "-c", "echo out; echo err >&2; exit 7"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert not result.ok and not result.timed_out and result.killed is None
    assert result.isolation == BEST and result.argv == (
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    )
    assert run(["/bin/sh", "-c", "exit 0"], tmp_path).ok


def test_missing_command_fails_without_raising(tmp_path: Path) -> None:
    result = run(["/nonexistent/tool", "--flag"], tmp_path)
    assert not result.ok and result.returncode != 0
    assert "/nonexistent/tool" in result.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"argv": []}, "sandbox: empty argv; pass the command to run"),
        (
            {"workdir": Path("/nonexistent/work")},
            "sandbox: workdir /nonexistent/work is not a directory",
        ),
        (
            {"readonly_paths": [Path("/nonexistent/hub")]},
            "sandbox: /nonexistent/hub does not exist",
        ),
        ({"isolation": "chroot"}, "sandbox: isolation 'chroot' does not work here"),
    ],
)
def test_caller_mistakes_raise_usage_error(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    call: dict[str, object] = {"argv": ["/bin/true"], "workdir": tmp_path, **kwargs}
    with pytest.raises(UsageError, match="^" + message):
        run(call.pop("argv"), call.pop("workdir"), **call)  # type: ignore[arg-type]


@needs_python
def test_python_module_runs_with_site_packages_and_pythonpath(tmp_path: Path) -> None:
    package = tmp_path / "lib" / "probe_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import yaml, sys\nprint('probe', yaml.safe_load('[1, 2]'), sys.argv[1:])\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    result = run([PY, "-m", "probe_pkg", "x"], work, env={"PYTHONPATH": str(tmp_path / "lib")})
    assert (result.returncode, result.stdout, result.stderr) == (0, "probe [1, 2] ['x']\n", "")


def test_timeout_kills_the_command(tmp_path: Path) -> None:
    result = run(["/bin/sh", "-c", BUSY], tmp_path, limits=Limits(timeout_seconds=1.0))
    assert result.timed_out and result.killed == "timeout" and result.returncode is None
    assert not result.ok
    assert 1.0 <= result.duration_seconds < 4.0


@pytest.mark.parametrize("isolation", BWRAP or ["rlimits-only"])
def test_timeout_kills_detached_descendants(tmp_path: Path, isolation: str) -> None:
    if not isolation.startswith("bwrap"):
        pytest.skip(
            "only a pid namespace (bubblewrap) catches children that leave the process group"
        )
    script = "setsid sleep 987651 & sleep 987652 & while :; do :; done"
    result = run(
        ["/bin/sh", "-c", script], tmp_path, limits=Limits(timeout_seconds=1.0), isolation=isolation
    )
    assert result.timed_out
    assert _wait_gone("98765") == []


@pytest.mark.parametrize("isolation", BWRAP or ["rlimits-only"])
def test_background_child_does_not_hold_the_result(tmp_path: Path, isolation: str) -> None:
    if not isolation.startswith("bwrap"):
        pytest.skip(
            "only a pid namespace (bubblewrap) catches children that leave the process group"
        )
    script = "setsid sleep 987653 & echo done"
    result = run(
        ["/bin/sh", "-c", script], tmp_path, limits=Limits(timeout_seconds=20), isolation=isolation
    )
    assert (result.ok, result.stdout) == (True, "done\n")
    assert result.duration_seconds < 5
    assert _wait_gone("987653") == []


@needs_python
def test_memory_limit_stops_a_large_allocation(tmp_path: Path) -> None:
    code = "b = bytearray(2 << 30); print('allocated', len(b))"
    result = run([PY, "-c", code], tmp_path, limits=Limits(memory_bytes=256 << 20))
    assert not result.ok and result.returncode == 1
    assert result.killed == "memory"
    assert "allocated" not in result.stdout and "MemoryError" in result.stderr


def test_cpu_limit_kills_a_busy_loop(tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=1, timeout_seconds=20)
    result = run(["/bin/sh", "-c", BUSY], tmp_path, limits=limits)
    assert result.killed == "cpu" and result.returncode == -signal.SIGXCPU
    assert not result.timed_out and not result.ok
    assert result.duration_seconds < 10


@needs_python
def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISMM_SANDBOX_SECRET", "hunter2")
    code = (
        "import json, os, pathlib\n"
        "pathlib.Path(os.environ['HOME'], 'note').write_text('home is writable')\n"
        "pathlib.Path(os.environ['TMPDIR'], 'note').write_text('tmp is writable')\n"
        "print(json.dumps(dict(os.environ)))\n"
    )
    result = run([PY, "-c", code], tmp_path, env={"EXTRA": "given"})
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert "hunter2" not in result.stdout and "AISMM_SANDBOX_SECRET" not in seen
    expected = {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONNOUSERSITE",
        "EXTRA",
    }
    assert set(seen) - {"PWD"} == expected
    assert seen["PATH"] == f"{Path(PY).parent}:/usr/local/bin:/usr/bin:/bin"
    assert (seen["LANG"], seen["EXTRA"], seen["PYTHONNOUSERSITE"]) == ("C.UTF-8", "given", "1")
    real_homes = {os.environ.get("HOME"), pwd.getpwuid(os.getuid()).pw_dir}
    assert seen["HOME"] not in real_homes and seen["HOME"] == seen["TMPDIR"]
    assert not Path(seen["HOME"]).exists(), "the run's temp dir is removed afterwards"


def test_output_is_truncated_and_marked(tmp_path: Path) -> None:
    script = "head -c 5000 /dev/zero | tr '\\0' x; printf '\\377' >&2"
    result = run(["/bin/sh", "-c", script], tmp_path, limits=Limits(output_bytes=1000))
    assert result.ok and result.truncated
    assert result.stdout == "x" * 1000 + "\n[aismm sandbox: output truncated at 1000 bytes]\n"
    assert result.stderr == "\ufffd"


HOSTILE = (
    "echo evil > ../hub/ref; echo evil >> ../hub/ref; echo evil > ../hub/new; chmod 777 ../hub/ref;"
    "mv ../hub/ref ../hub/moved; rm -f ../hub/ref; mkdir ../hub/dir; touch -d 2000-01-01 ../hub/ref;"
    "echo mine > own; cat ../hub/ref"
)


@pytest.mark.parametrize("isolation", PROTECTING)
def test_command_cannot_write_into_a_readonly_path(area: Path, isolation: str) -> None:
    ref = area / "hub" / "ref"
    before = ref.stat()
    result = run(
        ["/bin/sh", "-c", HOSTILE],
        area / "work",
        readonly_paths=[area / "hub"],
        isolation=isolation,
    )
    assert result.ok, result.stderr  # the last command (cat) ran: the hub stays readable
    assert result.stdout == "original\n"
    assert sorted(p.name for p in (area / "hub").iterdir()) == ["ref"]
    assert ref.read_text() == "original\n"
    after = ref.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_ino) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert (area / "work" / "own").read_text() == "mine\n"


@pytest.mark.parametrize("isolation", PROTECTING)
def test_workdir_ownership_is_restored(area: Path, isolation: str) -> None:
    script = "mkdir -p made/deep && echo x > made/deep/file && ln -s /etc/passwd made/link"
    result = run(["/bin/sh", "-c", script], area / "work", isolation=isolation)
    assert result.ok, result.stderr
    owners = {p.lstat().st_uid for p in [area / "work", *(area / "work").rglob("*")]}
    assert owners == {os.getuid()}
    assert Path("/etc/passwd").stat().st_uid == 0


@pytest.mark.parametrize("isolation", UID_DROP or ["rlimits-only"])
def test_hard_linked_file_in_workdir_stays_read_only(area: Path, isolation: str) -> None:
    if "uid-drop" not in isolation:
        pytest.skip("as root without a uid change the command owns every file")
    ref = area / "hub" / "ref"
    ref.chmod(0o444)
    os.link(ref, area / "work" / "object")  # what `git clone --local` does to objects
    script = "chmod 644 object; echo evil > object; echo evil >> object; true"
    result = run(["/bin/sh", "-c", script], area / "work", isolation=isolation)
    assert result.ok
    assert ref.read_text() == "original\n" and ref.stat().st_uid == 0


@pytest.mark.parametrize("isolation", BWRAP or ["rlimits-only"])
def test_nothing_outside_workdir_is_writable(area: Path, isolation: str) -> None:
    if not isolation.startswith("bwrap"):
        pytest.skip("without bubblewrap a world-writable directory stays writable")
    (area / "open").mkdir(mode=0o777)
    (area / "open").chmod(0o777)
    (area / "out").mkdir()
    var, shm, tmp = (
        Path("/var/tmp", area.name),
        Path("/dev/shm", area.name),
        Path("/tmp", f"{area.name}-z"),
    )
    targets = f"../open/x {var} {shm} ../out/y {tmp}"
    script = f"for f in {targets}; do touch $f 2>/dev/null && echo wrote $f; done; ls /tmp"
    try:
        result = run(
            ["/bin/sh", "-c", script],
            area / "work",
            writable_paths=[area / "out"],
            isolation=isolation,
        )
        found = [p for p in (area / "open" / "x", var, shm, tmp) if p.exists()]
    finally:
        for path in (var, shm, tmp):
            path.unlink(missing_ok=True)
    assert found == []
    lines = result.stdout.splitlines()
    wrote = {line for line in lines if line.startswith("wrote ")} - {f"wrote {shm}"}  # bwrap's /dev
    assert wrote == {"wrote ../out/y", f"wrote {tmp}"}
    assert tmp.name in lines  # the write went to the private /tmp
    assert (area / "out" / "y").exists() and (area / "out" / "y").stat().st_uid == os.getuid()


@pytest.mark.parametrize("isolation", [*NET_ISOLATED, "rlimits-only"])
def test_network_is_unavailable(tmp_path: Path, isolation: str) -> None:
    if isolation == "rlimits-only" and not NET_ISOLATED:
        pytest.skip("no network isolation works on this machine")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        script = f"echo hello > /dev/tcp/127.0.0.1/{port} && echo connected"
        result = run(
            [BASH, "-c", script], tmp_path, isolation=isolation, limits=Limits(timeout_seconds=10)
        )
        try:
            listener.accept()[0].close()
            accepted = True
        except TimeoutError:
            accepted = False
    if isolation == "rlimits-only":  # the control: the same command does connect
        assert (result.stdout, accepted) == ("connected\n", True)
    else:
        assert (result.returncode, result.stdout, accepted) == (1, "", False)


@pytest.mark.parametrize("isolation", UID_DROP or ["rlimits-only"])
def test_fork_bomb_is_contained(tmp_path: Path, isolation: str) -> None:
    if "uid-drop" not in isolation:
        pytest.skip("RLIMIT_NPROC binds only a dedicated uid; not running a fork bomb without it")
    limits = Limits(processes=16, timeout_seconds=2.0, cpu_seconds=5)
    probe = run([BASH, "-c", "ulimit -u"], tmp_path, limits=limits, isolation=isolation)
    assert probe.stdout == "16\n", "refusing to start a fork bomb without a process limit"
    bomb = "b() { sleep 987655 & b | b & }; b; wait"
    result = run([BASH, "-c", bomb], tmp_path, limits=limits, isolation=isolation)
    assert result.timed_out and not result.ok
    assert "fork" in result.stderr and "Resource temporarily unavailable" in result.stderr
    assert _wait_gone("987655") == []
