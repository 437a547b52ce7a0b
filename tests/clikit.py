"""Run the ``aismm`` CLI in-process for tests: the exit code ``main()`` chose and its output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aismm.cli import main


@dataclass
class Result:
    """What one CLI call did."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run(hub: Path, capsys: pytest.CaptureFixture[str] | None, *args: str) -> Result:
    """``aismm --hub HUB ARGS`` in-process (output captured when ``capsys`` is given)."""
    if capsys is not None:
        capsys.readouterr()
    try:
        main(["--hub", str(hub), *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return Result(code, out, err)


#: A variable that makes the CLI kill its own process where it says: only in a process of its own.
CRASH = "AISMM_CRASH_AT"


def call(args: Sequence[str], env: Mapping[str, str | None], timeout: float = 300) -> Result:
    """``aismm ARGS`` with ``env`` set (None removes a variable): :func:`in_process`, or a
    process of its own for a call that sets :data:`CRASH`."""
    if CRASH not in env:
        return in_process(args, env)
    full = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-m", "aismm", *args], capture_output=True,
                          text=True, env={k: v for k, v in full.items() if v is not None},
                          timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def in_process(args: Sequence[str], env: Mapping[str, str | None]) -> Result:
    """``aismm ARGS`` through ``main()`` in this process, with ``env`` set for the call (None
    removes a variable) and its output captured: what a new process would do, without the
    interpreter's start (a call that sets :data:`CRASH` needs a process of its own)."""
    assert CRASH not in env, "a crash point kills the process: run that call in a subprocess"
    saved = {key: os.environ.get(key) for key in env}
    out, err = io.StringIO(), io.StringIO()
    try:
        _apply(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        _apply(saved)
    return Result(code, out.getvalue(), err.getvalue())


def _apply(env: Mapping[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
