"""`aismm serve` runs the sandboxed work of a push (the DoD's command checks) in warm workers."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import git
from tests.test_serve import TASK, _clone, _hub, _start, _stop


def test_a_served_push_is_assessed_by_warm_workers(tmp_path: Path) -> None:
    hub, [created] = _hub(tmp_path)
    log = tmp_path / "serve.log"
    proc = _start(hub, log)
    try:
        clone = _clone(created, tmp_path / "clone", tmp_path / "me")
        (clone / "deliverable").mkdir()
        for f in (TASK / "golden").iterdir():
            (clone / "deliverable" / f.name).write_bytes(f.read_bytes())
        git("add", "deliverable", cwd=clone)
        git("commit", "-q", "-m", "Deliver", cwd=clone)
        pushed = git("push", "origin", "attempts/me", cwd=clone, check=False)
    finally:
        _stop(proc)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr
    text = log.read_text()
    assert "warm sandbox workers:" not in text, text  # none failed to start
    ran = re.search(r"warm sandbox workers ran (\d+) sandboxed run", text)
    assert ran and int(ran.group(1)) >= 1, text
