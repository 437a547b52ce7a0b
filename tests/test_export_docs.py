"""docs/ownership.md runs as written: its ``sh`` blocks, in order and unchanged, in one shell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ownership.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)
PASSED = ("HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_AUTHOR_NAME",
          "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "LANG", "LC_ALL")


def test_the_ownership_page_runs_as_written(tmp_path: Path) -> None:
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) == 3
    script = tmp_path / "session.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks))
    cli = Path(sys.executable).parent
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env |= {"PATH": f"{cli}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Exported hub to ") and lines[0].endswith(
        "hub.tar.gz: 1 repositories, 1 transfers, event 2, transfer 1")
    assert [line.split(":")[0] for line in lines[2:9]] == [
        "envelope", "inventory", "git", "signatures", "gate", "ledger", "reputation"]
    assert all(": ok" in line for line in lines[2:9])
    assert lines[9].startswith("Imported hub into ")
    assert lines[11].endswith("already holds this export; nothing to do")
    assert lines[-2:] == ["ledger check: clean (sum of balances 0)",
                          "reputation: ok (0 executions, 0 agents)"]
