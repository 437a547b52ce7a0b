"""The sandbox names its system tools by their real files: a PATH folder of links (outside what
the sandbox's private root shows) must not make every run fail to start."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aismm.infra import sandbox


def test_a_tool_found_through_a_link_is_named_by_its_real_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("setpriv")
    if real is None:
        pytest.skip("no setpriv on this machine")
    links = tmp_path / "bin"
    links.mkdir()
    (links / "setpriv").symlink_to(real)
    monkeypatch.setenv("PATH", str(links))
    assert sandbox._tool("setpriv") == os.path.realpath(real)
    assert sandbox._tool("no-such-tool-here") is None


def test_a_link_to_another_program_keeps_its_own_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sh -> dash or busybox: run under another name the multi-call program would misbehave."""
    links = tmp_path / "bin"
    links.mkdir()
    target = tmp_path / "busybox"
    target.write_text("#!/bin/false\n")
    target.chmod(0o755)
    (links / "sh").symlink_to(target)
    monkeypatch.setenv("PATH", str(links))
    assert sandbox._tool("sh") == str(links / "sh")
