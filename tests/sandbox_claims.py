"""Every sentence of docs/sandbox.md, as a check against real, hostile subprocesses.

Standard library and ``aismm.infra.sandbox`` only, so the same checks run in the test process (as root
here) and, as ``python sandbox_claims.py``, under another uid with another interpreter. Each
``claim_<tag>`` raises AssertionError when the sandbox breaks the sentence tagged ``[tag]``.
Run as a script it prints ``{"isolation": ..., "results": {tag: "ok" | "FAIL: ..."}}``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from aismm.core.errors import SandboxError
from aismm.infra import sandbox
from aismm.infra.sandbox import Limits, run

PY = sandbox.PYTHON
SH = "/bin/sh"


class Area:
    """A hub-like folder outside /tmp (world-readable, so only the view can hide it) and a workdir."""

    def __init__(self) -> None:
        base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else Path.home()
        self.top = Path(tempfile.mkdtemp(prefix="aismm-claims-", dir=base))
        self.top.chmod(0o755)
        self.hub = self.top / "hub"
        (self.hub / "keys").mkdir(parents=True)
        (self.hub / "keys" / "platform.key").write_text("SECRET-KEY\n")
        (self.hub / "ref").write_text("original\n")
        for path in (self.hub, self.hub / "keys"):
            path.chmod(0o755)
        self.work = Path(tempfile.mkdtemp(prefix="aismm-claims-work-"))
        self.work.chmod(0o755)

    def close(self) -> None:
        shutil.rmtree(self.top, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def py(code: str, area: Area, **kwargs: object) -> sandbox.Result:
    return run([PY, "-c", code], area.work, **kwargs)  # type: ignore[arg-type]


def claim_view(area: Area) -> None:
    result = py("import os, json; print(json.dumps(sorted(os.listdir('/'))))", area)
    assert result.ok, result.stderr
    seen = set(json.loads(result.stdout))
    bound = {Path(p).resolve().parts[1] for p in (sys.prefix, sys.base_prefix, sandbox.__file__,
                                                  area.work, PY)}
    allowed = {"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "tmp", "proc",
               "dev"} | bound
    assert seen <= allowed, f"unexpected top-level entries {sorted(seen - allowed)}"
    assert "usr" in seen and "proc" in seen and "var" not in seen and "home" not in seen
    size = run([SH, "-c", "df -k / | tail -1"], area.work)
    assert size.ok and int(size.stdout.split()[1]) <= 1024, size.stdout  # KiB: data goes nowhere


def claim_hub(area: Area) -> None:
    code = (f"import os\nfor p in {[str(area.hub), str(area.hub / 'keys' / 'platform.key'), str(Path.home()), '/var', '/root/.ssh']!r}:\n"
            "    print(p, os.path.exists(p) and os.listdir(p) if os.path.isdir(p) else os.path.exists(p))\n")
    result = py(code, area)
    assert result.ok, result.stderr
    assert "SECRET" not in result.stdout
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert lines[str(area.hub)] == "False" and lines[str(area.hub / "keys" / "platform.key")] == "False"
    assert lines["/var"] == "False"


def claim_hidden(area: Area) -> None:
    (area.top / "other").write_text("visible\n")
    code = (f"import os; print(open({str(area.top / 'other')!r}).read().strip(), "
            f"os.listdir({str(area.hub)!r}))")
    result = py(code, area, readonly_paths=[area.top], hidden_paths=[area.hub])
    assert result.ok, result.stderr
    assert result.stdout == "visible []\n"


HOSTILE = (
    "echo evil > {hub}/ref; echo evil >> {hub}/ref; echo evil > {hub}/new; chmod 777 {hub}/ref;"
    "mv {hub}/ref {hub}/moved; rm -f {hub}/ref; mkdir {hub}/dir; touch -d 2000-01-01 {hub}/ref;"
    "for p in /usr/x /etc/x {pkg}/x {pydir}/x; do touch $p 2>/dev/null && echo wrote $p; done;"
    "echo mine > own; cat {hub}/ref"
)


def claim_readonly(area: Area) -> None:
    ref = area.hub / "ref"
    before = ref.stat()
    script = HOSTILE.format(hub=area.hub, pkg=Path(sandbox.__file__).parent,
                            pydir=Path(PY).resolve().parent)
    result = run([SH, "-c", script], area.work, readonly_paths=[area.hub])
    assert result.ok, result.stderr
    assert result.stdout == "original\n", result.stdout
    assert sorted(p.name for p in area.hub.iterdir()) == ["keys", "ref"]
    after = ref.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_ino) == (
        before.st_mode, before.st_mtime_ns, before.st_ino)
    assert (area.work / "own").read_text() == "mine\n"


def claim_workdir(area: Area) -> None:
    out = area.top / "out"
    out.mkdir()
    (area.top / "open").mkdir(mode=0o777)
    (area.top / "open").chmod(0o777)
    script = (f"mkdir -p made/deep && echo x > made/deep/file && ln -s /etc/passwd made/link && "
              f"echo y > {out}/y; touch {area.top}/open/x 2>/dev/null && echo wrote open; true")
    result = run([SH, "-c", script], area.work, writable_paths=[out])
    assert result.ok, result.stderr
    assert "wrote open" not in result.stdout and not (area.top / "open" / "x").exists()
    owners = {p.lstat().st_uid for p in [area.work, *area.work.rglob("*"), out, out / "y"]}
    assert owners == {os.getuid()}


def claim_tmp(area: Area) -> None:
    name = f"aismm-claim-{os.getpid()}-{time.monotonic_ns()}"
    script = f"echo x > /tmp/{name} && echo $HOME $TMPDIR && df -k /tmp | tail -1"
    result = run([SH, "-c", script], area.work, limits=Limits(memory_bytes=256 << 20))
    assert result.ok, result.stderr
    assert result.stdout.splitlines()[0] == "/tmp /tmp"
    assert not Path("/tmp", name).exists()
    assert result.stdout.splitlines()[1].split()[1] == str(256 << 10)  # size in KiB


def claim_network(area: Area) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=5)\n"
                "    print('connected')\nexcept OSError as e:\n    print('refused', e.errno)\n" % port)
        result = py(code, area)
        try:
            listener.accept()[0].close()
            accepted = True
        except BlockingIOError:
            accepted = False
    assert result.ok, result.stderr
    assert result.stdout.startswith("refused") and not accepted


def claim_processes(area: Area) -> None:
    code = (f"import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            f"print(len(pids), os.path.exists('/proc/{os.getpid()}'))\n"
            f"try:\n    os.kill({os.getpid()}, 0); print('signalled')\n"
            f"except OSError: print('no')\n")
    result = py(code, area)
    assert result.ok, result.stderr
    count, visible, signal_line = result.stdout.split()
    assert int(count) <= 3 and visible == "False" and signal_line == "no", result.stdout


def claim_identity(area: Area) -> None:
    code = ("import os\nst = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
            "print(os.getuid(), os.geteuid(), *(int(st[k].strip(), 16) for k in "
            "('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')), st['NoNewPrivs'].strip())\n"
            "print(open('/proc/self/uid_map').read().split())\n")
    result = py(code, area)
    assert result.ok, result.stderr
    first, mapping = result.stdout.splitlines()
    uid, euid, *caps, nnp = first.split()
    assert caps == ["0"] * 5 and nnp == "1", first
    if result.isolation == "namespaces+uid":
        assert int(uid) == int(euid) >= sandbox.UID_BASE
    else:
        assert (uid, euid) == ("0", "0")
        assert eval(mapping)[:2] == ["0", str(os.getuid())]  # noqa: S307 - our own output


def claim_leftovers(area: Area) -> None:
    marker = f"98{os.getpid() % 10000:04d}1"
    result = run([SH, "-c", f"setsid sleep {marker} & sleep {marker}2 & echo done"], area.work,
                 limits=Limits(timeout_seconds=30))
    assert (result.ok, result.stdout) == (True, "done\n")
    assert result.duration_seconds < 10
    assert _processes_with(marker) == []


def claim_apart(area: Area) -> None:
    meet = area.top / "meet"
    meet.mkdir(mode=0o777)
    meet.chmod(0o777)
    works = [Path(tempfile.mkdtemp(prefix="aismm-apart-")) for _ in range(2)]
    results: dict[int, sandbox.Result] = {}

    def one(i: int) -> None:
        other = works[1 - i]
        code = (
            "import os, time, json\n"
            f"meet = {str(meet)!r}\n"
            f"open(os.path.join(meet, '{i}'), 'w').write(str(os.getpid()))\n"
            "for _ in range(2000):\n"
            f"    if os.path.exists(os.path.join(meet, '{1 - i}')): break\n"
            "    time.sleep(0.005)\n"
            f"print(json.dumps([os.getuid(), os.readlink('/proc/self/ns/user'), os.path.exists({str(other)!r}),"
            " len([p for p in os.listdir('/proc') if p.isdigit()])]))\n")
        results[i] = run([PY, "-c", code], works[i], writable_paths=[meet])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in works:
        shutil.rmtree(w, ignore_errors=True)
    seen = [json.loads(results[i].stdout) for i in range(2)]
    assert all(results[i].ok for i in range(2)), [results[i].stderr for i in range(2)]
    assert not seen[0][2] and not seen[1][2], "a run saw the other's workdir"
    assert seen[0][3] <= 3 and seen[1][3] <= 3
    if results[0].isolation == "namespaces+uid":
        assert seen[0][0] != seen[1][0]
    else:
        assert seen[0][1] != seen[1][1]


def claim_depth(area: Area) -> None:
    code = ("import os\nfor i in range(2000):\n    os.mkdir('d'); os.chdir('d')\n"
            "print('done')")
    result = py(code, area)
    assert result.stdout == "done\n", result.stderr
    assert not result.ok and result.killed == "tree" and "nested deeper" in result.stderr
    depth, here = 0, area.work
    while (here / "d").is_dir():
        here, depth = here / "d", depth + 1
    assert depth < sandbox.MAX_DEPTH
    assert {p.lstat().st_uid for p in area.work.rglob("*")} <= {os.getuid()}


def claim_timeout(area: Area) -> None:
    marker = f"97{os.getpid() % 10000:04d}1"
    script = f"setsid sleep {marker} & while :; do :; done"
    result = run([SH, "-c", script], area.work, limits=Limits(timeout_seconds=1.0))
    assert result.timed_out and result.killed == "timeout" and result.returncode is None
    assert not result.ok and 1.0 <= result.duration_seconds < 5.0
    assert _processes_with(marker) == []


def claim_limits(area: Area) -> None:
    big = py("b = bytearray(2 << 30); print('allocated', len(b))", area,
             limits=Limits(memory_bytes=256 << 20))
    assert big.killed == "memory" and "allocated" not in big.stdout, big
    busy = run([SH, "-c", "while :; do :; done"], area.work,
               limits=Limits(cpu_seconds=1, timeout_seconds=20))
    assert busy.killed == "cpu" and busy.returncode == -signal.SIGXCPU, busy
    large = run([SH, "-c", "head -c 200000 /dev/zero > big; echo $?"], area.work,
                limits=Limits(file_bytes=100_000))
    assert (area.work / "big").stat().st_size <= 100_000
    # The bomb hits the process limit within milliseconds, then waits on its sleepers until the
    # run's timeout ends it: a short timeout, so the claim does not wait out seconds.
    limits = Limits(processes=16, timeout_seconds=1.0, cpu_seconds=5)
    probe = run(["/bin/bash", "-c", "ulimit -u"], area.work, limits=limits)
    assert probe.stdout == "16\n", "refusing to start a fork bomb without a process limit"
    marker = f"96{os.getpid() % 10000:04d}1"
    bomb = run(["/bin/bash", "-c", f"b() {{ sleep {marker} & b | b & }}; b; wait"], area.work,
               limits=limits)
    assert not bomb.ok and "Resource temporarily unavailable" in bomb.stderr, bomb.stderr[-300:]
    assert _processes_with(marker) == []
    del large


def claim_environment(area: Area) -> None:
    os.environ["AISMM_SANDBOX_SECRET"] = "hunter2"
    try:
        code = "import json, os; print(json.dumps(dict(os.environ)))"
        result = py(code, area, env={"EXTRA": "given", "AISMM_SANDBOX": "forged"})
    finally:
        del os.environ["AISMM_SANDBOX_SECRET"]
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert "hunter2" not in result.stdout
    assert set(seen) == {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE",
                         "PYTHONNOUSERSITE", "PYTHONPATH", "AISMM_SANDBOX", "EXTRA"}, sorted(seen)
    assert seen["PATH"] == f"{Path(PY).parent}:/usr/local/bin:/usr/bin:/bin"
    assert (seen["HOME"], seen["TMPDIR"], seen["LANG"]) == ("/tmp", "/tmp", "C.UTF-8")
    assert seen["AISMM_SANDBOX"] == result.isolation and seen["EXTRA"] == "given"
    assert seen["PYTHONPATH"] == str(Path(sandbox.__file__).resolve().parents[2])


def claim_output(area: Area) -> None:
    script = "head -c 5000 /dev/zero | tr '\\0' x; printf '\\377' >&2"
    result = run([SH, "-c", script], area.work, limits=Limits(output_bytes=1000))
    assert result.ok and result.truncated
    assert result.stdout == "x" * 1000 + "\n[aismm sandbox: output truncated at 1000 bytes]\n"
    assert result.stderr == "\ufffd"


def claim_fault(area: Area) -> None:
    try:
        run([SH, "-c", "echo ran > ran"], area.work, hidden_paths=[Path("/usr/aismm-no/such")])
    except SandboxError as exc:
        assert "cannot set up" in str(exc), exc
    else:
        raise AssertionError("a view that cannot be built did not raise SandboxError")
    assert not (area.work / "ran").exists()


def claim_workspaces(area: Area) -> None:
    runs = Path(tempfile.gettempdir(), f"aismm-runs-{os.geteuid()}")
    runs.mkdir(mode=0o700, exist_ok=True)
    dead = _dead_pid()
    # built aside and renamed in whole: another run of these claims (same uid, at the same
    # time) may sweep it the moment it appears, which is what the claim is about
    aside = Path(tempfile.mkdtemp(prefix="aismm-stale-", dir=runs.parent))
    (aside / "deliverable").mkdir()
    (aside / "deliverable" / "x").write_text("left behind")
    stale = runs / f"{dead}-dod-stale-{os.getpid()}"
    aside.rename(stale)
    with sandbox.workspace("dod-") as fresh:
        assert fresh.parent == runs and fresh.name.startswith(f"{os.getpid()}-dod-")
        assert not stale.exists()
    assert not fresh.exists()


def _dead_pid() -> int:
    pid = 4_000_000
    while Path("/proc", str(pid)).exists():
        pid -= 1
    return pid


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line holds marker, after letting the kernel finish a teardown."""
    for _ in range(200):
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(
                        errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
        if not found:
            return []
        time.sleep(0.01)
    for pid in found:
        os.kill(pid, signal.SIGKILL)
    return found


CLAIMS: dict[str, Callable[[Area], None]] = {
    name.removeprefix("claim_"): fn for name, fn in sorted(globals().items())
    if name.startswith("claim_") and callable(fn)
}


def check(tag: str) -> str:
    area = Area()
    try:
        CLAIMS[tag](area)
        return "ok"
    except Exception:  # noqa: BLE001 - reported, with its traceback, to the test
        return "FAIL: " + traceback.format_exc(limit=3)[-1500:]
    finally:
        area.close()


def report() -> dict[str, object]:
    """Every claim's outcome here, as the script prints it."""
    return {"isolation": sandbox.isolation(), "uid": os.getuid(),
            "results": {tag: check(tag) for tag in CLAIMS}}


if __name__ == "__main__":
    if "--warm" in sys.argv:  # through warm workers (aismm.infra.warm) instead of one-shot runs
        from aismm.infra import warm

        with warm.pool(size=2) as workers:
            print(json.dumps({**report(), "warm_runs": workers.warm_runs,
                              "failures": workers.failures}))
    else:
        print(json.dumps(report()))
