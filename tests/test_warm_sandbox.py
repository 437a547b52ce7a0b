"""Every sentence of docs/sandbox.md holds for a run answered by a warm worker, as for one-shot.

The same checks as tests/test_sandbox.py (tests/sandbox_claims.py), with a pool of warm workers
installed: each run goes through a zygote's forked child instead of util-linux's wrappers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aismm.infra import sandbox, warm

sys.path.insert(0, str(Path(__file__).parent))
import sandbox_claims


@pytest.fixture(scope="module")
def pool() -> Iterator[warm.Pool]:
    with warm.pool(size=2) as workers:
        assert workers.failures == [] and workers.started == 2
        yield workers


@pytest.mark.parametrize("tag", sorted(sandbox_claims.CLAIMS))
def test_claim_through_a_warm_worker(pool: warm.Pool, tag: str) -> None:
    before = pool.warm_runs
    assert sandbox_claims.check(tag) == "ok"
    if tag != "workspaces":  # the only claim that runs nothing
        assert pool.warm_runs > before, "the claim's runs took the one-shot path"


NOBODY = 61_000  # an unprivileged uid with no passwd entry, made up for the test
SYSTEM_PYTHON = "/usr/bin/python3"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[dict[str, object]]:
    """Every claim as another, unprivileged uid (the ``namespaces`` level), through warm workers."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: test_claim_through_a_warm_worker covers it")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"no {SYSTEM_PYTHON} readable by an unprivileged user")
    # in /tmp: the other uid must reach it (the session's TMPDIR is private)
    with tempfile.TemporaryDirectory(prefix="aismm-unpriv-warm-", dir="/tmp") as tmp:
        top = Path(tmp)
        for name in ("__init__.py", "core/__init__.py", "core/errors.py", "infra/__init__.py",
                     "infra/sandbox.py", "infra/warm.py", "infra/zygote.py"):
            (top / "aismm" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "aismm" / name, top / "aismm" / name)
        shutil.copy(ROOT / "tests" / "sandbox_claims.py", top / "sandbox_claims.py")
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
             SYSTEM_PYTHON, "sandbox_claims.py", "--warm"],
            cwd=top, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(top), "HOME": "/nonexistent"},
            capture_output=True, text=True, timeout=300, check=False)  # a hang guard only
        assert done.returncode == 0, done.stderr[-2000:]
        yield json.loads(done.stdout)


@pytest.mark.parametrize("tag", sorted(sandbox_claims.CLAIMS))
def test_claim_through_a_warm_worker_unprivileged(unprivileged: dict[str, Any], tag: str) -> None:
    assert (unprivileged["uid"], unprivileged["isolation"]) == (NOBODY, "namespaces")
    assert unprivileged["failures"] == []
    assert unprivileged["warm_runs"] >= len(sandbox_claims.CLAIMS)
    assert unprivileged["results"][tag] == "ok"


@pytest.mark.parametrize(("levels", "with_file", "deep"),
                         [(63, True, True), (63, False, False), (64, False, True),
                          (62, True, False)])
def test_the_quick_depth_walk_agrees_with_find(tmp_path: Path, levels: int, with_file: bool,
                                               deep: bool) -> None:
    """The walk that spares each run a `find` says "deep" exactly when find finds something."""
    here = tmp_path
    for _ in range(levels):
        here = here / "d"
        here.mkdir()
    if with_file:
        (here / "f").write_text("x")
    found = subprocess.run(["find", str(tmp_path), "-mindepth", str(sandbox.MAX_DEPTH),
                            "-maxdepth", str(sandbox.MAX_DEPTH), "-print", "-quit"],
                           capture_output=True, check=True).stdout.strip()
    assert bool(found) is deep
    assert sandbox._deeper_than(tmp_path, sandbox.MAX_DEPTH - 1) is deep


CONTRACTS = ROOT / "contracts"


@pytest.mark.parametrize("name", ["code_review", "schema_design", "unit_tests"])
def test_agents_read_the_contract_fields_the_full_model_has(name: str) -> None:
    """The lean reader (no pydantic) gives what the hub's validated model says."""
    from aismm.agents.runtime import read_contract
    from aismm.core.contract import parse_contract

    text = (CONTRACTS / name / "contract.yaml").read_bytes()
    full, lean = parse_contract(text, "contract.yaml"), read_contract(text)
    assert (lean.id, lean.version, lean.ref) == (full.id, full.version, full.ref)
    assert lean.checks == tuple((c.name, tuple(c.run or ())) for c in full.dod.checks)
    assert lean.rubric == tuple((r.id, r.weight) for r in full.dod.review.rubric)
    assert lean.threshold == full.dod.review.threshold


@pytest.mark.parametrize(("text", "message"), [
    (b"id: [1\n", "contract.yaml: malformed YAML"),
    (b"- a list\n", "contract.yaml: (document): expected dict"),
    (b"id: x\nversion: '1'\ndod: {checks: [], review: {rubric: [{id: 3}]}}\n",
     "contract.yaml: dod.review.rubric.0.id: expected str"),
])
def test_a_broken_contract_is_one_usage_line(text: bytes, message: str) -> None:
    from aismm.agents.runtime import read_contract
    from aismm.core.errors import UsageError

    with pytest.raises(UsageError, match="^" + re.escape(message)):
        read_contract(text)


def test_a_cold_agent_imports_neither_pydantic_nor_jsonschema() -> None:
    code = ("import sys, aismm.agents.reviewer, aismm.agents.code_reviewer, "
            "aismm.agents.test_writer, aismm.checks.findings, aismm.checks.run_tests; "
            "print(sorted(m for m in ('pydantic', 'jsonschema') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
