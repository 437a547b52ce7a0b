"""Workflow contracts: ``steps`` form a DAG of pinned contracts, checked at ``contract
validate`` (a cycle, an unknown step, an unpinned contract, shares over 100 % are one line each,
exit 2); the catalog's ``contract.module_quality`` loads and its goldens pass its DoD."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from aismm.agents import orchestrator
from aismm.checks import workflow
from aismm.checks.schema_fit import first_error, validator
from aismm.core.contract import load_contract_dir, step_order
from aismm.core.plan import Decision, Outcome, Pinned, view
from tests import clikit

QUALITY = Path(__file__).resolve().parent.parent / "contracts" / "module_quality"


def test_module_quality_is_a_three_step_dag() -> None:
    contract = load_contract_dir(QUALITY)
    assert contract.ref == "contract.module_quality@1.0.0"
    assert step_order(contract.steps) == ["tests", "review", "test_review"]
    tests, review, test_review = contract.steps
    assert (tests.contract, review.contract, test_review.contract) == (
        "contract.unit_tests@1.0.0", "contract.code_review@1.0.0", "contract.code_review@1.0.0")
    assert (tests.needs, review.needs, test_review.needs) == ([], [], ["tests"])
    assert test_review.inputs["inputs/src/test_module.py"] == "tests:deliverable/test_module.py"
    assert (test_review.on_failure, tests.retry.max_attempts) == ("continue", 2)
    assert sum(s.budget_share_bp for s in contract.steps) <= 10000


def _broken(tmp_path: Path, edit: str) -> Path:
    folder = tmp_path / "module_quality"
    shutil.copytree(QUALITY, folder, ignore=shutil.ignore_patterns("benchmark"))
    data = yaml.safe_load((folder / "contract.yaml").read_text())
    steps = {s["id"]: s for s in data["steps"]}
    if edit == "cycle":
        steps["tests"]["needs"] = ["test_review"]
    elif edit == "unknown":
        steps["review"]["needs"] = ["lint"]
    elif edit == "unpinned":
        steps["review"]["contract"] = "contract.code_review"
    elif edit == "shares":
        steps["review"]["budget_share_bp"] = 6000
    elif edit == "source":
        steps["review"]["inputs"]["inputs/src/extra.py"] = "tests:deliverable/test_module.py"
    elif edit == "twice":
        steps["review"]["id"] = "tests"
    (folder / "contract.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


@pytest.mark.parametrize(("edit", "message"), [
    ("cycle", "steps: the needs of test_review, tests form a cycle; a workflow must be a DAG"),
    ("unknown", "steps: review: needs unknown step lint; declare it or drop it from needs"),
    ("unpinned", "steps.1.contract: Value error, 'contract.code_review' is not pinned; write "
                 "contract.<name>@<x.y.z>"),
    ("shares", "steps: budget shares add up to more than 10000 bp (100 %); lower them"),
    ("source", "steps: review: input inputs/src/extra.py comes from tests, which is not in "
               "needs; add tests to needs"),
    ("twice", "steps: step id tests is declared twice; give each step its own id"),
])
def test_contract_validate_refuses_a_bad_workflow_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str, message: str) -> None:
    folder = _broken(tmp_path, edit)
    result = clikit.run(tmp_path / "no-hub", capsys, "contract", "validate", str(folder))
    assert result.code == 2
    [line] = result.err_lines
    assert line.startswith(f"aismm: {folder / 'contract.yaml'}: ")
    assert message in line
    assert "Traceback" not in result.err


def test_contract_validate_accepts_module_quality(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = clikit.run(tmp_path / "no-hub", capsys, "contract", "validate", str(QUALITY),
                        "--json")
    assert (result.code, result.json) == (0, {"ref": "contract.module_quality@1.0.0",
                                              "valid": True})


@pytest.mark.parametrize("task", sorted(p.name for p in (QUALITY / "benchmark").iterdir()))
def test_benchmark_golden_report_matches_the_schema_and_the_expectation(task: str) -> None:
    folder = QUALITY / "benchmark" / task
    report = json.loads((folder / "golden" / "report.json").read_text())
    schema = validator(json.loads((QUALITY / "schemas" / "deliverable.schema.json").read_text()))
    assert first_error(schema, report) is None
    expect = yaml.safe_load((folder / "expect.yaml").read_text())
    assert expect["schema_version"] == 1
    assert report["summary"]["steps_accepted"] >= expect["min_steps_accepted"]
    assert set(report["steps"]) == {"tests", "review", "test_review"}


def test_the_reference_orchestrator_assembles_the_golden_shape(tmp_path: Path) -> None:
    """The report the orchestrator writes from accepted records validates against the schema."""
    contract = load_contract_dir(QUALITY)
    outcomes, decisions = {}, {}
    for n, step in enumerate(contract.steps, 1):
        decisions[n] = Decision(mission="module-quality-00000000", number=n, kind="open",
                                step=step.id, agent="ref-test-writer", price=100)
        commit = f"{n:040x}"
        outcomes[n] = Outcome(mission="module-quality-00000000", decision=n, kind="open",
                              step=step.id, child=f"module-quality-00000000-d{n:03d}",
                              agent="ref-test-writer", price=100, fee=10, state="accepted",
                              cost=110, deliverable=Pinned(commit=commit, files={
                                  "deliverable/report.json": "0" * 64}))
        results = tmp_path / f"orchestration/results/{n:03d}/deliverable"
        results.mkdir(parents=True)
        (results / "report.json").write_text(json.dumps({"tests": 7}))
    plan = view(contract, 2000, decisions, outcomes)
    report = orchestrator.report(tmp_path, plan)
    schema = validator(json.loads((QUALITY / "schemas" / "deliverable.schema.json").read_text()))
    assert first_error(schema, report) is None
    assert report["summary"] == {"tests": 21, "findings": 0, "steps_accepted": 3,
                                 "steps_given_up": 0}


def _checkout(root: Path, report: dict[str, object] | None, done: int = 3) -> Path:
    """A workflow attempt's checkout: the frozen contract, the plan and the platform's records
    (``done`` steps accepted), and the report."""
    shutil.copy(QUALITY / "contract.yaml", root / "contract.yaml")
    (root / "mission.yaml").write_text("price: 2600\n")
    contract = load_contract_dir(QUALITY)
    for n, step in enumerate(contract.steps[:done], 1):
        d = Decision(mission="mq-00000000", number=n, kind="open", step=step.id,
                     agent="ref-test-writer", price=100)
        o = Outcome(mission="mq-00000000", decision=n, kind="open", step=step.id,
                    child=f"mq-00000000-d{n:03d}", agent="ref-test-writer", price=100, fee=10,
                    state="accepted", cost=110, deliverable=Pinned(commit=f"{n:040x}", files={
                        "deliverable/report.json": f"{n:064x}"}))
        for folder, name, doc in (("plan", f"{n:03d}-open.yaml", d),
                                  ("orchestration", f"{n:03d}.yaml", o)):
            (root / folder).mkdir(exist_ok=True)
            (root / folder / name).write_text(yaml.safe_dump(doc.model_dump(mode="json")))
    if report is not None:
        (root / "deliverable").mkdir()
        (root / "deliverable" / "report.json").write_text(json.dumps(report))
    return root


def _report(root: Path) -> dict[str, object]:
    contract = load_contract_dir(QUALITY)
    decisions, outcomes = workflow._records(root)
    return orchestrator.report(root, view(contract, 2600, decisions, outcomes))


def test_workflow_check_passes_a_report_that_matches_the_records(tmp_path: Path) -> None:
    root = _checkout(tmp_path, None)
    (root / "deliverable").mkdir()
    (root / "deliverable" / "report.json").write_text(json.dumps(_report(root)))
    assert workflow.check(root) == []


def test_workflow_check_names_each_entry_that_differs(tmp_path: Path) -> None:
    root = _checkout(tmp_path, None)
    forged = _report(root)
    forged["steps"]["review"]["commit"] = "f" * 40  # type: ignore[index]
    (root / "deliverable").mkdir()
    (root / "deliverable" / "report.json").write_text(json.dumps(forged))
    assert workflow.check(root) == [
        f"deliverable/report.json: steps/review: commit is '{'f' * 40}' but the records say "
        f"'{2:040x}'; copy it from orchestration/"]


def test_workflow_check_refuses_a_report_before_every_step_is_done(tmp_path: Path) -> None:
    root = _checkout(tmp_path, {"steps": {}}, done=2)
    assert workflow.check(root) == [
        "deliverable/report.json: steps/tests: missing; report every step",
        "deliverable/report.json: steps/review: missing; report every step",
        "deliverable/report.json: steps/test_review: the step is not done (no accepted child, "
        "not given up); assemble once every step is done"]
