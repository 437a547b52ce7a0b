"""Run the ``aismm`` CLI in-process for tests: the exit code ``main()`` chose and its output."""

from __future__ import annotations

import json
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
