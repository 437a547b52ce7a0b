"""Where the test suite's time goes: a pytest plugin that prints, per test file, the wall time
and the CPU spent in the test process itself and in the processes it started (git, hooks, the
CLI, sandboxed runs).

Run from the repository root (with or without ``-n auto``)::

    PYTHONPATH=benchmarks .venv/bin/python -m pytest -p suite_cpu

Each test's figures are ``RUSAGE_SELF`` and ``RUSAGE_CHILDREN`` deltas around its run (set-up
and tear-down included). A child's CPU counts when it is reaped, so a long-lived helper (a warm
sandbox worker, a server) is charged to the test during which it ends. The figures are for
comparing files and runs on the same machine in the same hour; they are never asserted.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROWS: list[tuple[str, float, float, float]] = []  # nodeid, wall, self CPU, children's CPU
_SHOWN = 25  # files in the table


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    own, kids = _cpu()
    start = time.perf_counter()
    yield
    own_after, kids_after = _cpu()
    _ROWS.append((item.nodeid, time.perf_counter() - start, own_after - own, kids_after - kids))


def _folder(config: pytest.Config) -> Path:
    """Where the workers of one run leave their rows (one folder per run, made by the first
    process that asks: the controller under xdist, or the only process)."""
    run = os.environ.setdefault("SUITE_CPU_DIR", tempfile.mkdtemp(prefix="suite-cpu-"))
    return Path(run)


def pytest_configure(config: pytest.Config) -> None:
    _folder(config)  # before xdist starts its workers, so they inherit the folder


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER") or "main"
    (_folder(session.config) / f"{worker}.json").write_text(json.dumps(_ROWS))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    """The table, printed once by the process that reports (xdist's controller)."""
    folder = _folder(config)
    per_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for rows in folder.glob("*.json"):
        for nodeid, wall, own, kids in json.loads(rows.read_text()):
            figures = per_file[nodeid.split("::")[0]]
            figures[0] += wall
            figures[1] += own
            figures[2] += kids
            figures[3] += 1
    if not per_file:
        return
    totals = [sum(f[i] for f in per_file.values()) for i in range(4)]
    say = terminalreporter.write_line
    say(f"suite CPU: {totals[1] + totals[2]:.0f} s ({totals[1]:.0f} s in the test processes, "
          f"{totals[2]:.0f} s in what they started); {int(totals[3])} tests, {totals[0]:.0f} s of "
          "test wall time summed over the workers")
    say(f"{'cpu s':>7} {'wall s':>7} {'self s':>7} {'child s':>7} {'tests':>5}  file")
    ranked = sorted(per_file.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    for name, (wall, own, kids, count) in ranked[:_SHOWN]:
        say(f"{own + kids:7.1f} {wall:7.1f} {own:7.1f} {kids:7.1f} {int(count):5d}  {name}")
