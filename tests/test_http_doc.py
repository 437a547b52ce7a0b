"""docs/plain-git.md, section 9: the ``sh http`` blocks run as written, in order, in one shell.

Like tests/test_plain_git.py: one ``bash -euo pipefail`` session started in this project's clone
with a bare environment (the ``aismm`` CLI on ``PATH``, ``HOME``, git cut off from the user's
config). The session starts ``aismm serve --http 127.0.0.1:0``, an agent clones and delivers
over HTTP with a credential helper, the client accepts by a signed merge pushed over HTTP, and
the escrow settles.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from aismm.core.clock import FixedClock
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from tests import hubkit

DOC = hubkit.ROOT / "docs" / "plain-git.md"
BLOCK = re.compile(r"^```sh http\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)
PASSED = ("HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "LANG", "LC_ALL")


def test_the_doc_has_the_http_walk_through() -> None:
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) == 3
    assert "serve --http 127.0.0.1:0" in blocks[0] and "token create ext" in blocks[0]
    assert "credential.helper" in blocks[1] and "git push origin attempts/ext" in blocks[1]
    assert "git merge -q --no-ff -S" in blocks[2] and "git push -q origin accepted" in blocks[2]
    assert all("$HUB/missions" not in b.replace('"$HUB" mission', "") for b in blocks[1:])


def test_the_http_walk_through_runs_as_written(tmp_path: Path) -> None:
    blocks = BLOCK.findall(DOC.read_text())
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "tmp").mkdir()
    lines = ["set -euo pipefail"]
    for n, code in enumerate(blocks, 1):
        lines += [f'echo {n} > "$DOC_STATE/block"', "{", code + f'}} > "$DOC_STATE/{n}.out" 2>&1']
    lines += ['echo done > "$DOC_STATE/block"', 'echo "$HUB" > "$DOC_STATE/hub"',
              'echo "$MISSION" > "$DOC_STATE/mission"']
    script = state / "session.sh"
    script.write_text("\n".join(lines) + "\n")
    cli = Path(sys.executable).parent
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env |= {"PATH": f"{cli}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "TMPDIR": str(tmp_path / "tmp"), "DOC_STATE": str(state)}
    proc = subprocess.Popen(["bash", str(script)], cwd=hubkit.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        tail, _ = proc.communicate(timeout=600)
    finally:  # a failed block may leave the server running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    reached = (state / "block").read_text().strip()
    outputs = {n: (state / f"{n}.out").read_text(errors="replace")
               for n in range(1, len(blocks) + 1) if (state / f"{n}.out").exists()}
    logs = "".join(f"--- {log}:\n{log.read_text(errors='replace')[-3000:]}"
                   for log in sorted((tmp_path / "tmp").glob("*/serve.log")))
    assert reached == "done", (f"block {reached} failed:\n{outputs.get(int(reached), '')}\n"
                               f"{tail.decode(errors='replace')}\n{logs}")
    assert proc.returncode == 0
    assert re.search(r"^remote: aismm: platform DoD on ext: PASS", outputs[2], re.MULTILINE)
    assert ": SETTLED" in outputs[3]
    hub = Hub(Path((state / "hub").read_text().strip()), clock=FixedClock("2026-01-01T00:00:00Z"))
    mission = (state / "mission").read_text().strip()
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(mission)
        assert ledger.check() == []
    assert closure is not None and closure.kind == "settled"
    assert not (hub.root / "run" / "aismm.sock").exists()  # the server stopped cleanly
