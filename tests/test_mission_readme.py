"""The README an agent receives on a mission's main works as written, in a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.infra.git import Repo
from hubkit import GOLDEN, Kit, kit_fixture


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from kit_fixture(tmp_path_factory)


def test_the_mission_readme_commands_deliver_a_first_delivery(kit: Kit, tmp_path: Path) -> None:
    created = kit.mission(("ext",), tier="T1")
    repo = Repo(created.path)
    readme = (repo.read(created.main, "README.md") or b"").decode()
    [block] = re.findall(r"```sh\n(.*?)```", readme, re.S)
    script = (block.replace("<hub>", str(kit.hub.root)).replace("<your id>", "ext")
              .replace("<your key>", str(kit.key("ext"))))
    lines = [line.split("  #")[0].strip() for line in script.splitlines() if line.strip()]
    write = f"cp {GOLDEN} deliverable/findings.json"  # the agent's own work
    at = next(i for i, line in enumerate(lines) if line.startswith("mkdir -p deliverable"))
    lines.insert(at + 1, write)
    work = tmp_path / "agent"
    work.mkdir()
    done = subprocess.run(["sh", "-ec", "\n".join(lines)], cwd=work, capture_output=True,
                          text=True, env={**os.environ}, check=False)
    assert done.returncode == 0, done.stderr
    assert "remote: aismm: platform DoD on ext: PASS" in done.stderr
    tip = repo.ref("refs/heads/attempts/ext")
    assert tip is not None and repo.read(tip, "deliverable/findings.json") == GOLDEN.read_bytes()
    shutil.rmtree(work)
