"""Warm sandbox workers (aismm.infra.warm): same outcomes as one-shot runs, recycled, replaced.

Real zygotes, real namespaces, real check and agent programs on the catalog's benchmark tasks.
The containment claims through warm workers are in tests/test_warm_sandbox.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.core.contract import parse_contract
from aismm.infra import sandbox, warm
from aismm.services import dod

sys.path.insert(0, str(Path(__file__).parent))
from dodkit import benchmark_checkout, benchmark_tasks, schemas_of

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ["code_review", "schema_design", "unit_tests"]


@pytest.fixture()
def fresh_stamp() -> Iterator[None]:
    """Forget the cached code stamp, so the next look at the package's files is real."""
    warm._stamp = (-warm._STAMP_SECONDS, "")
    yield
    warm._stamp = (-warm._STAMP_SECONDS, "")


def _checkout(name: str, dest: Path) -> Path:
    contract_dir = ROOT / "contracts" / name
    return benchmark_checkout(contract_dir, benchmark_tasks(contract_dir)[0], dest, golden=True)


def _review(checkout: Path) -> tuple[sandbox.Result, str]:
    out = checkout / "verdicts" / "review.yaml"
    out.unlink(missing_ok=True)
    result = sandbox.run([sandbox.PYTHON, "-m", "aismm.agents.reviewer"], checkout,
                         env=dod.python_env({"AISMM_OUTPUT": "verdicts/review.yaml",
                                             "AISMM_ROLE": "reviewer"}))
    return result, out.read_text() if out.is_file() else ""


@pytest.mark.parametrize("name", CATALOG)
def test_a_warm_run_has_the_outcome_of_a_one_shot_run(tmp_path: Path, name: str) -> None:
    """The catalog's DoD checks and the reviewer, on a golden deliverable, both ways."""
    path = ROOT / "contracts" / name / "contract.yaml"
    contract = parse_contract(path.read_bytes(), str(path))
    checkout = _checkout(name, tmp_path / "checkout")
    (checkout / "verdicts").mkdir()
    schemas = schemas_of(contract, checkout)
    cold_checks = dod.run(contract, schemas, checkout)
    cold_review = _review(checkout)
    with warm.pool(size=1) as workers:
        warm_checks = dod.run(contract, schemas, checkout)
        warm_review = _review(checkout)
        assert workers.warm_runs == 1 + sum(c.kind == "command" for c in contract.dod.checks)
    assert [c.status for c in cold_checks] == ["pass"] * len(cold_checks)
    assert warm_checks == cold_checks
    assert (warm_review[0].returncode, warm_review[0].stdout) == (0, cold_review[0].stdout)
    assert cold_review[0].ok and "verdict: " in cold_review[1] and "score: " in cold_review[1]
    assert warm_review[1] == cold_review[1]


def test_a_worker_imports_a_program_the_first_time_a_run_asks_for_it(tmp_path: Path) -> None:
    """A warm zygote starts with no program imported (cheap to start); the first run of one
    imports it in the zygote, the runs after start from that import. Seen in the zygote's memory:
    pydantic's compiled core, which of the programs only the orchestrator loads."""
    argv = [sandbox.PYTHON, "-m", "aismm.agents.orchestrator"]  # no checkout: fails alike
    with warm.pool(size=1) as workers:
        maps = Path(f"/proc/{workers._idle[0].proc.pid}/maps")
        assert "pydantic_core" not in maps.read_text()
        assert sandbox.run(["/bin/true"], tmp_path).ok  # a command imports nothing
        assert "pydantic_core" not in maps.read_text()
        first = sandbox.run(argv, tmp_path)
        assert "pydantic_core" in maps.read_text()
        second = sandbox.run(argv, tmp_path)
        assert (workers.warm_runs, workers.started) == (3, 1)
    cold = sandbox.run(argv, tmp_path)
    assert first.returncode == second.returncode == cold.returncode == 2
    assert first.stderr == second.stderr == cold.stderr
    assert cold.stderr.startswith("aismm: orchestrator: ")


def test_a_worker_is_replaced_after_its_jobs(tmp_path: Path) -> None:
    with warm.pool(size=1, jobs_per_worker=2) as workers:
        for _ in range(3):
            assert sandbox.run(["/bin/true"], tmp_path).ok
        assert (workers.warm_runs, workers.started) == (3, 2)


def test_a_worker_is_replaced_when_the_code_changes(tmp_path: Path, fresh_stamp: None) -> None:
    source = Path(warm.__file__)
    before = source.stat()
    with warm.pool(size=1) as workers:
        assert sandbox.run(["/bin/true"], tmp_path).ok
        try:
            os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
            warm._stamp = (-warm._STAMP_SECONDS, "")
            assert sandbox.run(["/bin/true"], tmp_path).ok
        finally:
            os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (workers.warm_runs, workers.started) == (2, 2)


def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    with warm.pool(size=1) as workers:
        zygote = workers._idle[0].proc
        os.kill(zygote.pid, signal.SIGKILL)
        zygote.wait()
        result = sandbox.run(["/bin/sh", "-c", "echo alive"], tmp_path)
        assert (result.ok, result.stdout) == (True, "alive\n")
        assert (workers.warm_runs, workers.started) == (1, 2)


def test_without_a_worker_runs_start_one_shot(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class WarmFails(sandbox.Zygote):
        """A zygote that cannot start warm (a cold one, the one-shot path's, still starts)."""

        def __init__(self, stamp: str = "", *, cold: bool = False) -> None:
            if not cold:
                raise OSError("the warm worker did not start (no warm zygote in this test)")
            super().__init__(stamp, cold=cold)

    monkeypatch.setattr(sandbox, "Zygote", WarmFails)
    with warm.pool(size=1) as workers:
        assert workers.started == 0 and "no warm zygote" in workers.failures[0]
        result = sandbox.run(["/bin/sh", "-c", "echo one-shot"], tmp_path)
        assert (result.ok, result.stdout, workers.warm_runs) == (True, "one-shot\n", 0)


def test_a_busy_pool_does_not_make_a_run_wait(tmp_path: Path) -> None:
    """With every worker busy, a run starts one-shot at once rather than queue behind it."""
    with warm.pool(size=1) as workers:
        slow = threading.Thread(target=sandbox.run, args=(["/bin/sleep", "2"], tmp_path))
        slow.start()
        while workers._idle:  # the slow run holds the only worker
            time.sleep(0.01)
        result = sandbox.run(["/bin/sh", "-c", "echo quick"], tmp_path)
        waited = not slow.is_alive()  # the slow run still holds the worker: nothing waited
        slow.join()
        assert (result.ok, result.stdout, waited) == (True, "quick\n", False)
        assert workers.warm_runs == 1


def test_the_zygote_leaves_nothing_when_its_caller_goes(tmp_path: Path) -> None:
    with warm.pool(size=1) as workers:
        zygote = workers._idle[0].proc
    assert zygote.poll() is not None  # closed with the pool


def test_a_warm_run_leaves_no_descriptor_open(tmp_path: Path) -> None:
    with warm.pool(size=1):
        sandbox.run(["/bin/true"], tmp_path)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            assert sandbox.run(["/bin/sh", "-c", "echo x; echo y >&2"], tmp_path).ok
        assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("argv", [
    ["-m", "aismm.checks.findings"],  # reports the missing deliverable, exit 1
    ["-m", "aismm.agents.reviewer"],  # no contract.yaml: an uncaught exception, exit 1
    ["-m", "aismm.checks.run_tests", "--min-tests", "x"],  # argparse: usage, exit 2
    ["-m", "aismm.agents.no_such_program"],  # no such module: python's error, exit 1
    ["-m", "aismm.agents."],  # not a module name: python's error, exit 1
])
def test_a_failing_program_fails_the_same_way_warm(tmp_path: Path, argv: list[str]) -> None:
    """Also: a program the zygote cannot import leaves the zygote serving the next run."""
    command = [sandbox.PYTHON, *argv]
    cold = sandbox.run(command, tmp_path, env=dod.python_env())
    with warm.pool(size=1) as workers:
        hot = sandbox.run(command, tmp_path, env=dod.python_env())
        assert sandbox.run(["/bin/true"], tmp_path).ok
        assert (workers.warm_runs, workers.started) == (2, 1)
    assert cold.returncode == hot.returncode != 0
    assert hot.stdout == cold.stdout
    last = [(r.stderr.strip().splitlines() or [""])[-1] for r in (hot, cold)]
    assert last[0] == last[1]


def test_a_program_in_the_runs_folder_is_never_imported_by_the_zygote(tmp_path: Path) -> None:
    """A warm zygote imports a program itself, outside the sandbox: a workdir that holds its
    own ``aismm/agents/evil.py`` (or a whole ``aismm`` package) gets nothing imported there.
    Imported outside the sandbox, the module would write ``outside``; inside, it cannot see it."""
    outside = tmp_path / "outside"
    work = tmp_path / "work"
    for package in ("aismm", "aismm/agents"):
        (work / package).mkdir(parents=True)
        (work / package / "__init__.py").write_text("")
    (work / "aismm" / "agents" / "evil.py").write_text(
        f"open({str(outside)!r}, 'w').write('imported outside the sandbox')\n")
    argv = [sandbox.PYTHON, "-m", "aismm.agents.evil"]
    with warm.pool(size=1) as workers:
        for _ in range(2):
            sandbox.run(argv, work, env=dod.python_env())
        assert (workers.warm_runs, workers.started) == (2, 1)
    assert not outside.exists()
