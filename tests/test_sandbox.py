"""The sandbox against real, hostile subprocesses: every sentence of docs/sandbox.md, as root and
as an unprivileged user, with and without bubblewrap on PATH (it is never used)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.core.errors import SandboxError, UsageError
from aismm.infra import sandbox
from aismm.infra.sandbox import run

sys.path.insert(0, str(Path(__file__).parent))
import sandbox_claims  # noqa: E402 - the claims live beside this file, for the unprivileged run

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "sandbox.md").read_text()
NOBODY = 61_000  # an unprivileged uid with no passwd entry, made up for the test
SYSTEM_PYTHON = "/usr/bin/python3"


def test_every_sentence_of_the_doc_has_a_check_and_every_check_a_sentence() -> None:
    tags = set(re.findall(r"^- \[(\w+)\]|leaves no checkout .*?\[(\w+)\]", DOC, re.M | re.S))
    documented = {a or b for a, b in tags}
    assert documented == set(sandbox_claims.CLAIMS)


@pytest.mark.parametrize("tag", sorted(sandbox_claims.CLAIMS))
def test_claim_as_this_user(tag: str) -> None:
    assert sandbox_claims.check(tag) == "ok"


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[dict[str, object]]:
    """Run every claim as another, unprivileged uid, with the system interpreter."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: test_claim_as_this_user covers it")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"no {SYSTEM_PYTHON} readable by an unprivileged user")
    # in /tmp: the other uid must reach it (the session's TMPDIR is private)
    with tempfile.TemporaryDirectory(prefix="aismm-unpriv-", dir="/tmp") as tmp:
        top = Path(tmp)
        for name in ("__init__.py", "core/__init__.py", "core/errors.py", "infra/__init__.py",
                     "infra/sandbox.py", "infra/zygote.py"):
            (top / "aismm" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "aismm" / name, top / "aismm" / name)
        shutil.copy(ROOT / "tests" / "sandbox_claims.py", top / "sandbox_claims.py")
        fake = top / "fakebin"
        fake.mkdir()
        (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap must not be used' >&2; exit 99\n")
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or path.parent == fake else 0o644)
        # The two runs are independent (each claim makes its own folders): run them at once.
        started = {label: subprocess.Popen(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
             SYSTEM_PYTHON, "sandbox_claims.py"],
            cwd=top, env={"PATH": path, "PYTHONPATH": str(top), "HOME": "/nonexistent"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for label, path in (("without bwrap", "/usr/bin:/bin"),
                                ("with bwrap", f"{fake}:/usr/bin:/bin"))}
        runs = {}
        try:
            for label, proc in started.items():
                out, err = proc.communicate(timeout=300)  # a hang guard only
                assert proc.returncode == 0, err[-2000:]
                runs[label] = json.loads(out)
        finally:
            for proc in started.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        yield runs


@pytest.mark.parametrize("tag", sorted(sandbox_claims.CLAIMS))
@pytest.mark.parametrize("label", ["without bwrap", "with bwrap"])
def test_claim_as_an_unprivileged_user(unprivileged: dict[str, dict[str, object]], label: str,
                                       tag: str) -> None:
    report = unprivileged[label]
    assert (report["uid"], report["isolation"]) == (NOBODY, "namespaces")
    assert report["results"][tag] == "ok"  # type: ignore[index]


def test_bubblewrap_on_path_changes_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\nexit 99\n")
    (fake / "bwrap").chmod(0o755)
    code = ("import os, sys; sys.path.insert(0, %r); os.environ['PATH'] = %r + ':' + os.environ['PATH'];"
            "from aismm.infra import sandbox; import pathlib, tempfile;"
            "r = sandbox.run(['/bin/sh', '-c', 'echo hi'], pathlib.Path(tempfile.mkdtemp()));"
            "print(r.isolation, r.stdout.strip())") % (str(ROOT), str(fake))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [sandbox.isolation(), "hi"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"argv": []}, "sandbox: empty argv; pass the command to run"),
        ({"workdir": Path("/nonexistent/work")},
         "sandbox: workdir /nonexistent/work is not a directory"),
        ({"readonly_paths": [Path("/nonexistent/hub")]}, "sandbox: /nonexistent/hub does not exist"),
        ({"isolation": "chroot"}, "sandbox: unknown isolation 'chroot'"),
    ],
)
def test_caller_mistakes_raise_usage_error(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    call: dict[str, object] = {"argv": ["/bin/true"], "workdir": tmp_path, **kwargs}
    with pytest.raises(UsageError, match="^" + re.escape(message)):
        run(call.pop("argv"), call.pop("workdir"), **call)  # type: ignore[arg-type]


def test_a_level_that_does_not_work_here_is_a_hub_fault(tmp_path: Path) -> None:
    broken = "namespaces" if os.geteuid() == 0 else "namespaces+uid"
    with pytest.raises(SandboxError, match=f"isolation '{broken}' does not work here"):
        run(["/bin/sh", "-c", "echo ran > ran"], tmp_path, isolation=broken)
    assert not (tmp_path / "ran").exists()


def test_rlimits_only_runs_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox.isolation() != "rlimits-only"
    monkeypatch.setenv("AISMM_SANDBOX", "rlimits-only")
    result = run(["/bin/sh", "-c", "echo $AISMM_SANDBOX; id -u"], tmp_path)
    assert result.isolation == "rlimits-only"
    assert result.stdout.split() == ["rlimits-only", str(os.getuid())]


def test_missing_command_fails_without_raising(tmp_path: Path) -> None:
    result = run(["/nonexistent/tool", "--flag"], tmp_path)
    assert not result.ok and result.returncode != 0
    assert "/nonexistent/tool" in result.stderr


def test_the_probe_runs_the_real_interpreter() -> None:
    # an interpreter the run uid cannot execute is found by the probe, not blamed on an agent
    assert sandbox.capabilities()[sandbox.isolation()] is True
    with tempfile.TemporaryDirectory() as work:
        result = run([sandbox.PYTHON, "-c", "import aismm, yaml, jsonschema; print('ok')"],
                     Path(work))
    assert (result.ok, result.stdout) == (True, "ok\n"), result.stderr


def test_a_program_of_ours_runs_in_the_run_with_site_packages_but_nothing_of_the_workdir(
        tmp_path: Path) -> None:
    """A one-shot run of ``python -m aismm.checks.<name>`` runs in the run's own process and
    adds site-packages as a normal start does, without reading the workdir's
    ``sitecustomize.py`` or ``.pth`` files (a normal start never has the workdir on its path)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "sitecustomize.py").write_text("open('sitecustomize-ran', 'w').write('x')\n")
    (work / "evil.pth").write_text("import os; open('pth-ran', 'w').write('x')\n")
    (work / "findings.json").write_text("{}")  # what the check reads is beside the point
    result = run([sandbox.PYTHON, "-m", "aismm.checks.findings"], work)
    assert result.returncode in (0, 1, 2), result.stderr  # it ran and said something
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["evil.pth", "findings.json",
                                                      "sitecustomize.py"]
