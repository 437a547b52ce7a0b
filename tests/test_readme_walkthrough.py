"""The README's hand-run walk-through runs as written (its /tmp paths moved into a temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_plain_git_block_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The same story by hand, with plain git", 1)[1]
    [block] = re.findall(r"```sh\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    script = block.replace("/tmp/", f"{tmp_path}/")  # the only change: where its files go
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Reader",
           "GIT_AUTHOR_EMAIL": "reader@example.invalid", "GIT_COMMITTER_NAME": "Reader",
           "GIT_COMMITTER_EMAIL": "reader@example.invalid"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "remote: aismm: platform DoD on me: PASS" in said
    assert "remote: aismm: escrow settled" in said
    assert 'Good "git" signature' in said
    assert "SETTLED" in said
