"""The reference agents, run as real subprocesses in checkouts of every benchmark task."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aismm.agents.code_reviewer import RULES, analyze
from aismm.agents.runtime import deliverable_tree
from aismm.checks.expect import evaluate
from aismm.core.contract import Contract, load_contract_dir
from aismm.core.document import CheckResult
from tests.dodkit import (
    benchmark_checkout,
    benchmark_tasks,
    platform_verdict,
    run_dod,
    scrubbed_env,
)

CATALOG = Path(__file__).resolve().parent.parent / "contracts"
REFERENCE = {"code_review": ("ref-code-reviewer", "code_reviewer"),
             "schema_design": ("ref-schema-designer", "schema_designer"),
             "unit_tests": ("ref-test-writer", "test_writer")}
SLOPPY = ("sloppy-coder", "sloppy")
TASKS = [(name, task.name) for name in REFERENCE for task in benchmark_tasks(CATALOG / name)]
DELIVERABLE_TREE = "0" * 40


@dataclass
class Attempt:
    """One specialist run on one task, its DoD results and the reviewer's verdict."""

    root: Path
    agent: subprocess.CompletedProcess[str]
    results: list[CheckResult]
    review: subprocess.CompletedProcess[str]
    verdict: dict[str, Any]


def run_agent(module: str, root: Path, contract: Contract, actor: str, role: str = "specialist",
              **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aismm.agents.<module>`` the way the hub's command runtime does."""
    env = {**scrubbed_env(root), "AISMM_ACTOR": actor, "AISMM_MISSION": "m-bench",
           "AISMM_CONTRACT": contract.ref, "AISMM_ROLE": role, **extra,
           "AISMM_SANDBOX": "rlimits-only"}  # not sandboxed here: say so, or checks refuse to run
    del env["PYTHONDONTWRITEBYTECODE"]  # agents must not leave __pycache__ in the checkout
    return subprocess.run([sys.executable, "-m", f"aismm.agents.{module}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def checkout(name: str, task: str, dest: Path) -> Path:
    """A checkout of a fresh attempt on a benchmark task."""
    root = benchmark_checkout(CATALOG / name, CATALOG / name / "benchmark" / task, dest)
    (root / "mission.yaml").write_text(f"schema_version: 1\nid: m-bench\ncontract: contract.{name}"
                                       "@1.0.0\n")
    (root / "README.md").write_text(f"Benchmark task {task}\n")
    return root


def review(root: Path, contract: Contract, results: list[CheckResult]
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Commit-like platform verdict from the results, then run ref-reviewer on the checkout."""
    (root / "verdicts").mkdir(exist_ok=True)
    platform = {"schema_version": 1, "mission": "m-bench", "reviewer": "platform",
                "deliverable_tree": deliverable_tree(root), **platform_verdict(results)}
    (root / "verdicts" / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))
    output = root.parent / f"{root.name}-verdict.yaml"
    done = run_agent("reviewer", root, contract, "ref-reviewer", "reviewer",
                     AISMM_OUTPUT=str(output))
    verdict = yaml.safe_load(output.read_text()) if output.is_file() else {}
    return done, verdict


def attempt(name: str, task: str, agent: tuple[str, str], dest: Path) -> Attempt:
    contract = load_contract_dir(CATALOG / name)
    root = checkout(name, task, dest)
    done = run_agent(agent[1], root, contract, agent[0])
    results = run_dod(contract, root)
    reviewed, verdict = review(root, contract, results)
    return Attempt(root, done, results, reviewed, verdict)


@pytest.fixture(scope="module")
def attempts(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Attempt]:
    """Every (contract, task, agent) attempt, run in parallel once for the whole module."""
    base = tmp_path_factory.mktemp("attempts")
    jobs = [(name, task, agent) for name, task in TASKS for agent in (REFERENCE[name], SLOPPY)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {
            (name, task, agent[0]): pool.submit(attempt, name, task, agent,
                                                base / f"{name}-{task}-{agent[0]}")
            for name, task, agent in jobs
        }
        return {key: future.result() for key, future in futures.items()}


def _ids(param: object) -> str:
    return str(param)


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_ids)
def test_reference_specialist_passes_the_dod_and_the_benchmark(
    attempts: dict[tuple[str, str, str], Attempt], name: str, task: str
) -> None:
    contract = load_contract_dir(CATALOG / name)
    run = attempts[(name, task, REFERENCE[name][0])]
    assert (run.agent.returncode, run.agent.stderr) == (0, "")
    assert [(r.name, r.detail) for r in run.results if r.status != "pass"] == []
    score, misses = evaluate(contract.ref, CATALOG / name / "benchmark" / task,
                             run.root / "deliverable")
    assert score >= contract.benchmark.quality, misses


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_ids)
def test_reference_specialist_writes_only_under_deliverable(
    attempts: dict[tuple[str, str, str], Attempt], name: str, task: str, tmp_path: Path
) -> None:
    run = attempts[(name, task, REFERENCE[name][0])]
    fresh = checkout(name, task, tmp_path / "fresh")

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and not p.relative_to(root).as_posix().startswith(
                    ("deliverable/", "verdicts/"))}

    assert files(run.root) == files(fresh)
    assert sorted(p.name for p in (run.root / "deliverable").iterdir()) == sorted(
        p.name for p in (CATALOG / name / "benchmark" / task / "golden").iterdir()
    )


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_ids)
def test_sloppy_specialist_fails_the_dod(
    attempts: dict[tuple[str, str, str], Attempt], name: str, task: str
) -> None:
    contract = load_contract_dir(CATALOG / name)
    run = attempts[(name, task, SLOPPY[0])]
    assert run.agent.returncode == 0
    failed = {r.name for r in run.results if r.status == "fail"}
    command_checks = {c.name for c in contract.dod.checks if c.kind == "command"}
    assert "files" in failed or "schema" in failed
    assert command_checks & failed
    score, _ = evaluate(contract.ref, CATALOG / name / "benchmark" / task,
                        run.root / "deliverable")
    assert score < contract.benchmark.quality


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_ids)
def test_reviewer_passes_reference_work_and_fails_sloppy_work(
    attempts: dict[tuple[str, str, str], Attempt], name: str, task: str
) -> None:
    contract = load_contract_dir(CATALOG / name)
    rubric_ids = sorted(item.id for item in contract.dod.review.rubric)
    threshold = contract.dod.review.threshold
    good, bad = attempts[(name, task, REFERENCE[name][0])], attempts[(name, task, SLOPPY[0])]
    for run in (good, bad):
        assert (run.review.returncode, run.review.stderr) == (0, "")
        assert sorted(run.verdict) == ["comments", "rubric", "score", "verdict"]
        assert sorted(run.verdict["rubric"]) == rubric_ids
        assert all(isinstance(v, int) and 0 <= v <= 100 for v in run.verdict["rubric"].values())
        assert isinstance(run.verdict["score"], int) and 0 <= run.verdict["score"] <= 100
    assert good.verdict["verdict"] == "pass" and good.verdict["score"] >= threshold
    assert bad.verdict["verdict"] == "fail" and bad.verdict["score"] < threshold
    assert "platform DoD failed" in bad.verdict["comments"]


def test_a_failing_platform_verdict_caps_the_reviewer_below_threshold(
    attempts: dict[tuple[str, str, str], Attempt]
) -> None:
    contract = load_contract_dir(CATALOG / "schema_design")
    run = attempts[("schema_design", "order", "ref-schema-designer")]
    results = [*run.results, CheckResult(name="extra", status="fail", detail="simulated")]
    done, verdict = review(run.root, contract, results)
    assert done.returncode == 0
    assert verdict["verdict"] == "fail"
    assert verdict["score"] == contract.dod.review.threshold - 1
    assert verdict["rubric"] == attempts[("schema_design", "order",
                                          "ref-schema-designer")].verdict["rubric"]
    assert verdict["comments"].endswith("platform DoD failed (extra); score capped at 69")


def test_reviewer_without_output_path_fails_with_a_usage_error(tmp_path: Path) -> None:
    contract = load_contract_dir(CATALOG / "code_review")
    root = checkout("code_review", "http_helpers", tmp_path / "c")
    done = run_agent("reviewer", root, contract, "ref-reviewer", "reviewer")
    assert done.returncode == 2
    assert done.stderr.startswith("aismm: AISMM_OUTPUT: not set;")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_specialist_redelivers_cleanly_and_answers_a_rework_request(name: str,
                                                                    tmp_path: Path) -> None:
    contract = load_contract_dir(CATALOG / name)
    task = benchmark_tasks(CATALOG / name)[0].name
    root = checkout(name, task, tmp_path / "c")
    (root / "deliverable").mkdir()
    (root / "deliverable" / "stale.txt").write_text("from an earlier delivery\n")
    (root / "requests").mkdir()
    (root / "requests" / "001-rework.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "kind": "rework", "reason": "Please double-check every item.",
        "deliverable_tree": DELIVERABLE_TREE,
    }))
    done = run_agent(REFERENCE[name][1], root, contract, REFERENCE[name][0],
                     AISMM_REQUEST="requests/001-rework.yaml")
    assert (done.returncode, done.stderr) == (0, "")
    notes = (root / "deliverable" / "notes.md").read_text()
    assert notes.startswith("# Rework\n\nRequest: `requests/001-rework.yaml`\n")
    assert "> Please double-check every item." in notes
    assert not (root / "deliverable" / "stale.txt").exists()
    assert [r.status for r in run_dod(contract, root)] == ["pass"] * len(contract.dod.checks)


def test_agent_refuses_a_contract_it_does_not_serve(tmp_path: Path) -> None:
    contract = load_contract_dir(CATALOG / "schema_design")
    root = checkout("schema_design", "customer", tmp_path / "c")
    done = run_agent("code_reviewer", root, contract, "ref-code-reviewer")
    assert done.returncode == 2
    assert done.stderr == (
        "aismm: contract.yaml: contract.schema_design is not served by this agent (serves"
        " contract.code_review); route the mission elsewhere\n"
    )
    assert not (root / "deliverable").exists()


# --- the code reviewer's rules, one exact finding each ----------------------------------------


RULE_CASES = [
    ("unused-import", "import os\nimport sys\nprint(sys.argv)\n", [(1, "unused-import")]),
    ("unused-import-from", "from typing import Any, List\n\nx: Any = 1\n",
     [(1, "unused-import")]),
    ("unused-import-__all__", "from a import b\n__all__ = ['b']\n", []),
    ("bare-except", "try:\n    pass\nexcept:\n    pass\n", [(3, "bare-except")]),
    ("mutable-default", "def f(a,\n      b=[],\n      *, c={}):\n    return a, b, c\n",
     [(2, "mutable-default"), (3, "mutable-default")]),
    ("mutable-default-call", "def f(a=dict()):\n    return a\n", [(1, "mutable-default")]),
    ("unreachable-code", ("def f(x):\n    if x:\n        raise ValueError(x)\n        print(x)\n"
     "    return x\n"), [(4, "unreachable-code")]),
    ("unreachable-after-continue", "for i in range(3):\n    continue\n    print(i)\n",
     [(3, "unreachable-code")]),
    ("shadowed-builtin", "def f(list):\n    return list\n", [(1, "shadowed-builtin")]),
    ("shadowed-builtin-assign", "def f(x):\n    id = x\n    return id\n",
     [(2, "shadowed-builtin")]),
    ("class-attributes-are-not-shadowing", ("class A:\n    id = 1\n\n    def format(self):\n"
     "        return self.id\n"), []),
    ("none-comparison", "def f(x):\n    return x == None or x != None\n",
     [(2, "none-comparison")]),
    ("bool-comparison", "def f(x):\n    return x == True\n", [(2, "bool-comparison")]),
    ("is-literal", "def f(x):\n    return x is 'a'\n", [(2, "is-literal")]),
    ("is-none-is-fine", "def f(x):\n    return x is None\n", []),
    ("fstring-no-placeholder", "x = 3\na = f'abc'\nb = f'{x:>{x}}'\n",
     [(2, "fstring-no-placeholder")]),
    ("duplicate-dict-key", "d = {\n    'a': 1,\n    'b': 2,\n    'a': 3,\n}\n",
     [(4, "duplicate-dict-key")]),
    ("unused-variable", "def f():\n    x = 1\n    y = 2\n    return y\n",
     [(2, "unused-variable")]),
    ("unused-exception-name", ("def f():\n    try:\n        pass\n    except ValueError as e:\n"
     "        pass\n"), [(4, "unused-variable")]),
    ("nested-use-counts", "def f():\n    x = 1\n\n    def g():\n        return x\n    return g\n",
     []),
    ("assert-tuple", "def f(x):\n    assert (x, 'message')\n", [(2, "assert-tuple")]),
    ("eval-used", "def f(s):\n    return eval(s)\n", [(2, "eval-used")]),
    ("syntax-error", "def f(:\n    pass\n", [(1, "syntax-error")]),
    ("clean", "import json\n\n\ndef dump(value: object) -> str:\n    return json.dumps(value)\n",
     []),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in RULE_CASES],
                         ids=[c[0] for c in RULE_CASES])
def test_code_reviewer_rule(source: str, expected: list[tuple[int, str]]) -> None:
    found = analyze(source, "inputs/src/case.py")
    assert [(f.line, f.rule) for f in found] == expected
    for finding in found:
        assert finding.file == "inputs/src/case.py"
        assert finding.severity == RULES[finding.rule][0]
        assert len(finding.message.split()) >= 4


def test_code_reviewer_messages_name_the_culprit() -> None:
    source = textwrap.dedent("""\
        import os


        def f(items=[]):
            return items
    """)
    assert [f.message for f in analyze(source, "inputs/src/m.py")] == [
        "'os' is imported but never used; remove the import",
        ("default of 'items' in f() is a mutable list shared by every call; default to None and"
        " create it inside"),
    ]
