"""A three-step workflow end to end against the same three missions by hand through the CLI.

``python benchmarks/bench_workflow.py [--quick]``; ``run(quick)`` returns the figures for run.py.

Workflow: ``contract.module_quality`` on the mathx module with ``ref-orchestrator`` — three
child missions (unit tests and a review of the module in parallel, then a review of those
tests), each delivered, checked, reviewed, accepted and settled, the report assembled and
checked, the parent accepted and settled — driven by ``aismm process`` passes alone.
By hand: the same three missions created, accepted and settled with ``aismm mission create``
and ``aismm mission accept`` (inline processing runs the agents, the DoD and the reviewer), the
third one's input taken from the first one's accepted deliverable with ``git show``. Both in
the same process tree on the same hub (assessed reference agents), at T0. Goal: ratio <= 1.5.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.services import market, mission, registrar, settlement, worker  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402

TASK = ROOT / "contracts" / "module_quality" / "benchmark" / "mathx" / "inputs"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _hub(root: Path) -> Hub:
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root / "hub")
    market.register_reference_agents(hub)  # specialists and reviewers assessed and listed
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10_000_000, cause="bench")
    return hub


def _cli(hub: Hub, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), *args,
                           "--json"], env=ENV, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"aismm {' '.join(args)}: {done.stderr.strip()}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def workflow(hub: Hub) -> float:
    """One module_quality run, created to settled; seconds."""
    start = time.perf_counter()
    created = mission.create(hub, contract_ref="contract.module_quality", client="alice",
                             inputs=TASK, price=2600, tier="T0", agents=["ref-orchestrator"])
    worker.process(hub)
    settlement.accept(hub, created.doc.id, "ref-orchestrator")
    worker.process(hub)
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(created.doc.id)
    if closure is None or closure.kind != "settled":
        raise RuntimeError(f"{created.doc.id}: the workflow did not settle")
    return time.perf_counter() - start


def by_hand(hub: Hub, work: Path) -> float:
    """The same three missions through the CLI; seconds."""
    start = time.perf_counter()
    tests_in, review_in, test_review_in = (work / n for n in ("t", "r", "tr"))
    (review_in / "src").mkdir(parents=True)
    (test_review_in / "src").mkdir(parents=True)
    tests_in.mkdir()
    shutil.copy(TASK / "module.py", tests_in / "module.py")
    shutil.copy(TASK / "tests_request.json", tests_in / "request.json")
    shutil.copy(TASK / "module.py", review_in / "src" / "module.py")
    for folder in (review_in, test_review_in):
        shutil.copy(TASK / "review_request.json", folder / "request.json")

    def one(contract: str, agent: str, inputs: Path, price: int) -> str:
        made = _cli(hub, "mission", "create", "--contract", contract, "--client", "alice",
                    "--inputs", str(inputs), "--price", str(price), "--tier", "T0",
                    "--agent", agent)
        _cli(hub, "mission", "accept", made["id"], "--attempt", agent)
        return str(made["id"])

    first = one("contract.unit_tests", "ref-test-writer", tests_in, 500)
    one("contract.code_review", "ref-code-reviewer", review_in, 400)
    tests = subprocess.run(["git", "show", "accepted:deliverable/test_module.py"],
                           cwd=hub.mission_path(first), env=ENV, capture_output=True,
                           check=True).stdout
    (test_review_in / "src" / "test_module.py").write_bytes(tests)
    one("contract.code_review", "ref-code-reviewer", test_review_in, 400)
    return time.perf_counter() - start


def run(quick: bool = False) -> dict[str, Any]:
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="aismm-bench-wf-") as tmp:
        hub = _hub(Path(tmp))
        flows, hands = [], []
        for i in range(rounds):  # interleaved, so both see the same machine load
            flows.append(workflow(hub))
            work = Path(tmp) / f"hand{i}"
            work.mkdir()
            hands.append(by_hand(hub, work))
    wf, hand = statistics.median(flows), statistics.median(hands)
    return {"workflow_s": wf, "by_hand_s": hand, "workflow_vs_hand": wf / hand,
            "rounds": rounds}


if __name__ == "__main__":
    figures = run("--quick" in sys.argv)
    print(f"three-step workflow end to end: {figures['workflow_s']:.2f} s; the same three "
          f"missions by hand through the CLI: {figures['by_hand_s']:.2f} s; ratio "
          f"{figures['workflow_vs_hand']:.2f} (goal <= 1.5; median of {figures['rounds']})")
