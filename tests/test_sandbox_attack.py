"""Attacks on the way a sandboxed run starts (the zygote) and on the forked unit-test runner.

Each test is an attack that once worked or that a change could reopen; the hostile code is real
and runs for real (one-shot, through a cold zygote).
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from pathlib import Path

import pytest

from aismm.infra import sandbox
from aismm.infra.sandbox import PYTHON

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


def _ignored(status: str) -> int:
    return int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]


def test_a_run_starts_with_the_signal_dispositions_of_a_fresh_process(tmp_path: Path) -> None:
    """The zygote ignores SIGINT; an ignored signal stays ignored across exec, so every run
    (and every process it starts) could not be interrupted, unlike under a fresh process."""
    result = sandbox.run(["/bin/sh", "-c", "cat /proc/self/status"], tmp_path)
    here = subprocess.run(["/bin/sh", "-c", "cat /proc/self/status"], capture_output=True,
                          text=True, check=True).stdout
    assert _ignored(result.stdout) & ~_ignored(here) == 0, result.stdout  # nothing more ignored
