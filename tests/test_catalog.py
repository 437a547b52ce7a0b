"""The contract catalog: every contract loads, every benchmark task is valid, every golden
passes the hub's own DoD."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from aismm.checks import findings, mutants, run_tests, schema_fit
from aismm.checks.expect import evaluate
from aismm.core.contract import Contract, load_contract_dir, parse_ref
from aismm.core.errors import ContractError
from aismm.services.mission import check_inputs, read_inputs
from tests.dodkit import benchmark_checkout, benchmark_tasks, run_dod, schemas_of

CATALOG = Path(__file__).resolve().parent.parent / "contracts"
NAMES = ["code_review", "schema_design", "unit_tests"]
MANIFESTS = Path(__file__).resolve().parent.parent / "aismm" / "agents" / "manifests"
FEE_BANDS = {"T0": (0, 300), "T1": (800, 1200), "T2": (2000, 3500)}
TASKS = [(name, task) for name in NAMES for task in benchmark_tasks(CATALOG / name)]


def _contract(name: str) -> Contract:
    return load_contract_dir(CATALOG / name)


def _task_id(param: object) -> str:
    return param.name if isinstance(param, Path) else str(param)


@pytest.mark.parametrize("name", NAMES)
def test_contract_loads_with_the_required_shape(name: str) -> None:
    contract = _contract(name)
    assert contract.ref == f"contract.{name}@1.0.0"
    kinds = [check.kind for check in contract.dod.checks]
    assert kinds[:2] == ["files", "schema"] and "command" in kinds
    for check in contract.dod.checks:
        if check.kind == "command":
            assert check.run is not None and check.run[:2] == ["{python}", "-m"]
            assert check.run[2].startswith("aismm.checks.")
    assert contract.dod.review.quorum == 1
    assert len(contract.dod.review.rubric) >= 3
    assert sorted(contract.tiers) == ["T0", "T1", "T2"]
    for tier, terms in contract.tiers.items():
        low, high = FEE_BANDS[tier]
        assert low <= terms.fee_bp <= high
    assert contract.schema_paths()[0].startswith("schemas/")
    assert "schemas/inputs.schema.json" in contract.schema_paths()
    assert "schemas/deliverable.schema.json" in contract.schema_paths()
    for spec in [*contract.inputs.files, *contract.deliverable.files]:
        assert spec.path.startswith(("inputs/", "deliverable/"))


@pytest.mark.parametrize("name", NAMES)
def test_each_contract_has_at_least_three_benchmark_tasks(name: str) -> None:
    tasks = benchmark_tasks(CATALOG / name)
    assert len(tasks) >= 3
    for task in tasks:
        assert (task / "expect.yaml").is_file()
        assert yaml.safe_load((task / "expect.yaml").read_text())["schema_version"] == 1
        assert any((task / "golden").iterdir())


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_task_id)
def test_task_inputs_satisfy_the_contract(name: str, task: Path, tmp_path: Path) -> None:
    contract = _contract(name)
    root = benchmark_checkout(CATALOG / name, task, tmp_path)
    # what `aismm mission create` checks: raises ContractError listing any problem
    check_inputs(contract, schemas_of(contract, root), read_inputs(root / "inputs"), root)


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_task_id)
def test_golden_passes_every_dod_check(name: str, task: Path, tmp_path: Path) -> None:
    contract = _contract(name)
    root = benchmark_checkout(CATALOG / name, task, tmp_path, golden=True)
    results = run_dod(contract, root)
    assert [r.name for r in results] == [c.name for c in contract.dod.checks]
    assert [(r.name, r.detail) for r in results if r.status != "pass"] == []


@pytest.mark.parametrize(("name", "task"), TASKS, ids=_task_id)
def test_golden_meets_the_benchmark_quality(name: str, task: Path) -> None:
    contract = _contract(name)
    score, details = evaluate(contract.ref, task, task / "golden")
    assert score >= contract.benchmark.quality, details


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_deliverable_scores_zero(name: str, tmp_path: Path) -> None:
    task = benchmark_tasks(CATALOG / name)[0]
    score, details = evaluate(f"contract.{name}", task, tmp_path)
    assert score == 0
    assert len(details) == 1 and "missing" in details[0]


def test_expect_code_review_counts_misses_and_false_positives(tmp_path: Path) -> None:
    task = CATALOG / "code_review" / "benchmark" / "report_builder"
    document = json.loads((task / "golden" / "findings.json").read_text())
    document["findings"] = [f for f in document["findings"] if f["rule"] != "bool-comparison"]
    document["findings"].append({**document["findings"][0], "file": "inputs/src/render.py",
                                 "line": 5, "rule": "unused-import"})
    (tmp_path / "findings.json").write_text(json.dumps(document))
    score, details = evaluate("contract.code_review@1.0.0", task, tmp_path)
    assert details == ["missed: inputs/src/formulas.py:17 bool-comparison",
                       "unexpected: inputs/src/render.py:5 unused-import"]
    assert score == round(100 * (0.7 * 0.5 + 0.3 * 2 / 3))


def test_expect_schema_design_names_each_wrong_judgement(tmp_path: Path) -> None:
    task = CATALOG / "schema_design" / "benchmark" / "customer"
    schema = json.loads((task / "golden" / "schema.json").read_text())
    del schema["properties"]["plan"]["enum"]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    score, details = evaluate("contract.schema_design", task, tmp_path)
    assert details == ["accepts must_reject 4 (plan outside the observed domain)"]
    assert score == round(100 * 15 / 16)


def test_expect_unit_tests_scores_surviving_mutants(tmp_path: Path) -> None:
    task = CATALOG / "unit_tests" / "benchmark" / "mathx"
    (tmp_path / "test_module.py").write_text(
        "from module import clamp, is_prime, gcd_list, mean, fibonacci\n\n\n"
        "def test_all():\n"
        "    assert clamp(5, 0, 10) == 5\n"
        "    assert is_prime(7)\n"
        "    assert gcd_list([4, 6]) == 2\n"
        "    assert mean([2.0]) == 2.0\n"
        "    assert fibonacci(1) == 1\n"
    )
    score, details = evaluate("contract.unit_tests", task, tmp_path)
    assert details == [
        "1 tests; expected at least 5",
        "mutant survived: clamp: return min(x, hi)\n",
        ("mutant survived: is_prime: return n >= 2 and all(n % d for d in range(2,"
         " math.isqrt(n)))\n"),
        "mutant survived: gcd_list: return math.gcd(*values[:2]) if values else 0\n",
        "mutant survived: mean: return sum(values) // len(values)\n",
    ]
    assert score == round(20 * 1 / 5 + 30 + 50 * 6 / 10)


# --- the command checks, each on a deliberately broken deliverable --------------------------


def _checkout(name: str, task: str, tmp_path: Path) -> Path:
    return benchmark_checkout(CATALOG / name, CATALOG / name / "benchmark" / task, tmp_path,
                              golden=True)


def test_findings_check_reports_bad_anchors_duplicates_and_summary(tmp_path: Path) -> None:
    root = _checkout("code_review", "report_builder", tmp_path)
    path = root / "deliverable" / "findings.json"
    document = json.loads(path.read_text())
    first = document["findings"][0]
    document["findings"] += [first, {**first, "line": 999}, {**first, "line": 2},
                             {**first, "file": "inputs/src/nope.py"}]
    path.write_text(json.dumps(document))
    assert findings.check(root) == [
        ("deliverable/findings.json: findings/3: repeats inputs/src/formulas.py:12 eval-used;"
        " report each finding once"),
        ("deliverable/findings.json: findings/4: line 999 is outside inputs/src/formulas.py"
        " (1-26); point at a real line"),
        ("deliverable/findings.json: findings/5: inputs/src/formulas.py:2 is a blank line;"
        " point at the offending code"),
        ("deliverable/findings.json: findings/6: file 'inputs/src/nope.py' is not one of"
        " inputs/src/*.py; name a reviewed file"),
        ("deliverable/findings.json: summary: total is 3 but there are 7 findings;"
        " make them agree"),
        ("deliverable/findings.json: summary: by_severity/warning is 1 but 5 findings have it;"
        " make them agree"),
    ]


def test_schema_fit_rejects_a_permissive_schema_and_names_each_gap(tmp_path: Path) -> None:
    root = _checkout("schema_design", "sensor_reading", tmp_path)
    path = root / "deliverable" / "schema.json"
    schema = json.loads(path.read_text())
    schema["required"].remove("ip")
    schema["properties"]["tags"] = {}
    path.write_text(json.dumps(schema))
    assert schema_fit.check(root) == [
        ("deliverable/schema.json: accepts sample 0 without the field 'ip' present in every"
        " sample; tighten it (required, types, additionalProperties: false)"),
        ("deliverable/schema.json: accepts sample 0 with 'tags' set to a string; tighten it"
        " (required, types, additionalProperties: false)"),
    ]
    schema["properties"]["battery"] = {"type": "integer"}
    path.write_text(json.dumps(schema))
    assert schema_fit.check(root)[:3] == [
        ("deliverable/schema.json: rejects inputs/samples.json[0] (battery: 0.93 is not of type"
        " 'integer'); accept every sample"),
        ("deliverable/schema.json: rejects inputs/samples.json[1] (battery: 0.4 is not of type"
        " 'integer'); accept every sample"),
        ("deliverable/schema.json: rejects inputs/samples.json[3] (battery: 0.71 is not of type"
        " 'integer'); accept every sample"),
    ]


def test_schema_fit_refuses_an_invalid_schema(tmp_path: Path) -> None:
    root = _checkout("schema_design", "customer", tmp_path)
    (root / "deliverable" / "schema.json").write_text('{"type": "record"}')
    [problem] = schema_fit.check(root)
    assert problem.startswith("deliverable/schema.json: not a valid JSON Schema (")


def test_run_tests_reports_failures_pytest_imports_and_too_few_tests(tmp_path: Path) -> None:
    root = _checkout("unit_tests", "textkit", tmp_path)
    tests = root / "deliverable" / "test_module.py"
    tests.write_text("from module import slugify\n\n\ndef test_a():\n"
                     "    assert slugify('A b') == 'a-b'\n\n\n"
                     "def test_b():\n    assert slugify('A') == 'A'\n\n\n"
                     "def test_c(tmp_path):\n    pass\n")
    assert run_tests.check(root, min_tests=4, report="none.json") == [
        "deliverable/test_module.py::test_b: fails: AssertionError",
        ("deliverable/test_module.py::test_c: fails: takes arguments (tmp_path); fixtures are"
        " not supported"),
        "deliverable/test_module.py: 3 tests found; the contract asks for at least 4",
    ]
    tests.write_text("import pytest\n\n\ndef test_a():\n    assert True\n")
    assert run_tests.check(root) == [
        ("deliverable/test_module.py: line 1: imports pytest; use plain asserts (pytest may be"
        " absent where checks run)")
    ]


def test_run_tests_checks_the_report_against_the_file(tmp_path: Path) -> None:
    root = _checkout("unit_tests", "textkit", tmp_path)
    report = root / "deliverable" / "report.json"
    document = json.loads(report.read_text())
    document["tests"] += 1
    document["functions_covered"] += ["shout"]
    report.write_text(json.dumps(document))
    assert run_tests.check(root, min_tests=3) == [
        (f"deliverable/report.json: tests is {document['tests']} but the file has"
        f" {document['tests'] - 1} tests; make them agree"),
        ("deliverable/report.json: functions_covered names 'shout', not a public function of"
        " inputs/module.py; list only real functions"),
    ]


def test_mutants_check_names_functions_whose_stub_survives(tmp_path: Path) -> None:
    root = _checkout("unit_tests", "money", tmp_path)
    (root / "deliverable" / "test_module.py").write_text(
        "from module import parse_amount, split_evenly\n\n\n"
        "def test_parse():\n    assert parse_amount('1') == 100\n\n\n"
        "def test_split():\n    split_evenly(10, 2)\n"
    )
    assert mutants.check(root) == [
        ("inputs/module.py: format_cents() replaced by a stub returning None breaks no test;"
        " assert on its results"),
        ("inputs/module.py: split_evenly() replaced by a stub returning None breaks no test;"
        " assert on its results"),
        ("inputs/module.py: apply_discount() replaced by a stub returning None breaks no test;"
        " assert on its results"),
    ]


def test_mutants_check_uses_the_functions_the_request_names(tmp_path: Path) -> None:
    root = _checkout("unit_tests", "mathx", tmp_path)
    request = root / "inputs" / "request.json"
    request.write_text(json.dumps({"schema_version": 1, "title": "t", "functions": ["mean"]}))
    (root / "deliverable" / "test_module.py").write_text(
        "from module import mean\n\n\ndef test_mean():\n    assert mean([1.0, 3.0]) == 2.0\n"
    )
    assert mutants.check(root) == []


def test_make_mutant_replaces_one_body_and_refuses_unknown_functions() -> None:
    source = "def f(x):\n    return x + 1\n\n\ndef g():\n    return 2\n"
    assert mutants.make_mutant(source, mutants.Mutant("f", "return x - 1")) == (
        "def f(x):\n    return x - 1\n\ndef g():\n    return 2\n"
    )
    with pytest.raises(KeyError):
        mutants.make_mutant(source, mutants.Mutant("h"))


def test_a_failing_check_fails_the_dod_with_its_output(tmp_path: Path) -> None:
    contract = _contract("code_review")
    root = _checkout("code_review", "http_helpers", tmp_path)
    (root / "deliverable" / "extra.txt").write_text("x")
    shutil.rmtree(root / "inputs" / "src")
    (root / "inputs" / "src").mkdir()
    results = {r.name: r for r in run_dod(contract, root)}
    assert results["files"].status == "fail"
    assert results["files"].detail == (
        "deliverable/extra.txt: not an allowed deliverable path; deliver only"
        " deliverable/findings.json, deliverable/notes.md"
    )
    assert results["schema"].status == "pass"
    assert results["findings-anchored"].status == "fail"
    assert results["findings-anchored"].detail.startswith(
        "deliverable/findings.json: findings/0: file 'inputs/src/client.py' is not one"
    )


# --- agent manifests -------------------------------------------------------------------------


EXPECTED_AGENTS = {
    "ref-code-reviewer": ("acme", ["specialist"], ["code_review"], "code_reviewer"),
    "ref-schema-designer": ("acme", ["specialist"], ["schema_design"], "schema_designer"),
    "ref-test-writer": ("acme", ["specialist"], ["unit_tests"], "test_writer"),
    "ref-reviewer": ("qa-guild", ["reviewer"], NAMES, "reviewer"),
    "sloppy-coder": ("cheapo", ["specialist"], NAMES, "sloppy"),
    "ref-orchestrator": ("acme", ["orchestrator"], ["module_quality"], "orchestrator"),
}


@pytest.mark.parametrize("agent", sorted(EXPECTED_AGENTS))
def test_manifest_matches_the_agent(agent: str) -> None:
    manifest = yaml.safe_load((MANIFESTS / f"{agent}.yaml").read_text())
    owner, roles, names, module = EXPECTED_AGENTS[agent]
    assert sorted(manifest) == ["capacity", "contracts", "description", "id", "owner", "price",
                                "roles", "runtime", "schema_version"]
    assert (manifest["schema_version"], manifest["id"], manifest["owner"]) == (1, agent, owner)
    assert manifest["roles"] == roles
    assert manifest["contracts"] == [f"contract.{n}@1.0.0" for n in names]
    assert manifest["runtime"] == {"kind": "command", "timeout_seconds": 60,
                                   "argv": ["{python}", "-m", f"aismm.agents.{module}"]}
    assert isinstance(manifest["capacity"], int) and manifest["capacity"] > 0
    for ref in manifest["contracts"]:
        cid, version = parse_ref(ref)
        contract = _contract(cid.removeprefix("contract."))
        assert version == contract.version
        assert contract.pricing.min <= manifest["price"] <= contract.pricing.max


def test_every_manifest_is_listed() -> None:
    assert sorted(p.stem for p in MANIFESTS.glob("*.yaml")) == sorted(EXPECTED_AGENTS)


def test_a_schema_checked_again_after_it_changed_is_judged_anew(tmp_path: Path) -> None:
    """The meta-schema check is kept per schema text: the same text is not checked twice, and
    a changed file is judged by what it says now (valid, broken, valid again)."""
    folder = tmp_path / "code_review"
    shutil.copytree(CATALOG / "code_review", folder)
    schema_file = folder / "schemas" / "deliverable.schema.json"
    good = schema_file.read_text()
    assert load_contract_dir(folder).id == "contract.code_review"
    schema_file.write_text('{"type": "record"}')
    with pytest.raises(ContractError, match=r"not a valid JSON Schema \('record' is not valid"):
        load_contract_dir(folder)
    with pytest.raises(ContractError, match="not a valid JSON Schema"):  # the kept answer
        load_contract_dir(folder)
    schema_file.write_text(good)
    assert load_contract_dir(folder).id == "contract.code_review"
