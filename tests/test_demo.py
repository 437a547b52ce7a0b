"""`aismm demo`: the story runs end to end and matches the repositories it leaves behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import git


def test_demo_story_matches_the_hub(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "aismm", "demo", "--dir", str(tmp_path / "d")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    hub = tmp_path / "d" / "hub"
    assert re.search(r"sloppy-coder .*REJECTED", out)
    assert not [line for line in out.splitlines() if line.count("quality") > 1]  # one figure
    assert "isolation namespaces" in out  # says which sandbox ran the agents
    assert re.search(r"ref-code-reviewer .*LISTED", out)
    assert "filed requests/001-rework.yaml" in out
    assert "$ git merge --no-ff -S" in out and "$ git push origin accepted" in out
    assert "hub: escrow settled: 400 to provider:lintworks, 40 fee to platform:fees" in out
    assert "ledger check: clean" in out
    checked = int(re.search(r"verify-tag \((\d+) checked\)", out).group(1))  # type: ignore[union-attr]
    assert checked >= 8
    missions = sorted(hub.glob("missions/*.git"))
    assert len(missions) == 2
    for repo in missions:
        tag = git("-C", str(repo), "-c", "gpg.format=ssh", "-c",
                  f"gpg.ssh.allowedSignersFile={hub / 'allowed_signers'}", "verify-tag",
                  "settled", check=False)
        assert tag.returncode == 0, tag.stderr
    states = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub), "mission", "list",
                             "--json"], capture_output=True, text=True)
    import json

    assert sorted(r["state"] for r in json.loads(states.stdout)) == ["settled", "settled"]
    check = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub), "ledger", "check"],
                           capture_output=True, text=True)
    assert check.returncode == 0


def test_demo_refuses_a_nonempty_dir(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    done = subprocess.run([sys.executable, "-m", "aismm", "demo", "--dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "folder is not empty" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]
