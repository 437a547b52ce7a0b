"""aismm.core.files: the one implementation of a contract's rules on a folder of files, as the
gate, mission creation and the DoD each report it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aismm.core.contract import load_contract_dir
from aismm.core.errors import ContractError
from aismm.core.files import (
    FileProblem,
    document_problems,
    layout_problems,
    parse_document,
    schema_targets,
)
from aismm.services.mission import check_inputs, read_inputs
from tests.dodkit import benchmark_checkout, run_dod, schemas_of

CATALOG = Path(__file__).resolve().parent.parent / "contracts"
CONTRACT = load_contract_dir(CATALOG / "code_review")
SCHEMAS = schemas_of(CONTRACT, CATALOG / "code_review")
TASK = CATALOG / "code_review" / "benchmark" / "http_helpers"


def test_layout_names_each_rule_in_a_stable_order() -> None:
    limits = CONTRACT.deliverable.limits
    sizes = {"deliverable/findings.json": limits.max_file_bytes + 1,
             "deliverable/Findings.json": 1, "deliverable/x.txt": 1}
    assert [str(p) for p in layout_problems(CONTRACT, "deliverable", sizes,
                                            around=["inputs/request.json"])] == [
        ("deliverable/findings.json: collides with deliverable/Findings.json on"
         " case-insensitive file systems; rename one of them"),
        (f"deliverable/: 3 files exceed the contract's limit of {limits.max_files};"
         " deliver fewer files"),
        ("deliverable/Findings.json: not an allowed deliverable path; deliver only"
         " deliverable/findings.json, deliverable/notes.md"),
        (f"deliverable/findings.json: {limits.max_file_bytes + 1} bytes exceed the per-file"
         f" limit of {limits.max_file_bytes}; make the file smaller"),
        ("deliverable/x.txt: not an allowed deliverable path; deliver only"
         " deliverable/findings.json, deliverable/notes.md"),
    ]


def test_required_files_are_checked_unless_left_to_the_dod() -> None:
    assert layout_problems(CONTRACT, "deliverable", {}) == [
        FileProblem("deliverable/findings.json", "required deliverable missing", "add it")]
    assert layout_problems(CONTRACT, "deliverable", {}, required=False) == []


def test_inputs_limits_include_the_total() -> None:
    limits = CONTRACT.inputs.limits
    each = limits.max_total_bytes // 5 + 1
    sizes = {"inputs/request.json": 10, **{f"inputs/src/m{i}.py": each for i in range(5)}}
    assert [str(p) for p in layout_problems(CONTRACT, "inputs", sizes)] == [
        f"inputs/: {10 + 5 * each} bytes exceed the total limit of {limits.max_total_bytes};"
        " provide less"]


def test_documents_parse_by_extension() -> None:
    assert parse_document("a.json", b'{"a": 1}') == {"a": 1}
    assert parse_document("a.yaml", b"a: 1\n") == {"a": 1}
    assert parse_document("a.md", b"a: 1\n") == {"a": 1}
    with pytest.raises(ValueError):
        parse_document("a.json", b"a: 1\n")
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_document("a.json", b"[" * 100_000 + b"]" * 100_000)


def test_document_problems_cover_only_files_with_a_schema() -> None:
    files: dict[str, bytes | None] = {"deliverable/findings.json": b"{not json",
                                      "deliverable/notes.md": b"{not yaml"}
    assert schema_targets(CONTRACT, "deliverable", files) == [
        ("deliverable/findings.json", "schemas/deliverable.schema.json")]
    [problem] = document_problems(CONTRACT, "deliverable", files, SCHEMAS)
    assert (problem.path, problem.fix) == ("deliverable/findings.json", "deliver valid JSON")
    assert problem.what.startswith("cannot be parsed (")
    files = {"deliverable/findings.json": json.dumps({"schema_version": 1}).encode()}
    assert [p.what for p in document_problems(CONTRACT, "deliverable", files, SCHEMAS)] == [
        "fails the contract schema ((document): 'findings' is a required property)",
        "fails the contract schema ((document): 'summary' is a required property)",
    ]
    assert len(document_problems(CONTRACT, "deliverable", files, SCHEMAS, per_file=1)) == 1
    assert document_problems(CONTRACT, "deliverable", {"deliverable/findings.json": None},
                             SCHEMAS) == [FileProblem("deliverable/findings.json",
                                                      "not a regular file",
                                                      "deliver the file itself")]


def test_mission_inputs_and_the_dod_word_a_problem_as_the_gate_does(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "src").mkdir(parents=True)
    (inputs / "request.json").write_text('{"schema_version": 1}')
    (inputs / "extra.txt").write_text("x")
    with pytest.raises(ContractError) as raised:
        check_inputs(CONTRACT, SCHEMAS, read_inputs(inputs), inputs)
    assert str(raised.value).splitlines() == [
        (f"{inputs}: inputs/extra.txt: not an allowed input path; provide only"
         " inputs/request.json, inputs/src/*.py"),
        f"{inputs}: inputs/src/*.py: required input missing; add it",
        *(f"{inputs}: inputs/request.json: fails the contract schema ((document): '{field}' is"
          " a required property); make the file match the contract's schema"
          for field in ("title", "language")),
    ]
    root = benchmark_checkout(CATALOG / "code_review", TASK, tmp_path / "c", golden=True)
    (root / "deliverable" / "extra.txt").write_text("x")
    (root / "deliverable" / "findings.json").write_text('{"schema_version": 1}')
    checks = {c.name: c for c in run_dod(CONTRACT, root)}
    assert checks["files"].detail == (
        "deliverable/extra.txt: not an allowed deliverable path; deliver only"
        " deliverable/findings.json, deliverable/notes.md")
    assert checks["schema"].detail.splitlines() == [
        (f"deliverable/findings.json: fails the contract schema ((document): '{field}' is a"
         " required property); make the file match the contract's schema")
        for field in ("findings", "summary")]


def test_the_dod_never_follows_a_link_or_opens_a_fifo(tmp_path: Path) -> None:
    root = benchmark_checkout(CATALOG / "code_review", TASK, tmp_path / "c", golden=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"schema_version": 1, "secret": "hunter2"}')
    (root / "deliverable" / "findings.json").unlink()
    (root / "deliverable" / "findings.json").symlink_to(secret)
    os.mkfifo(root / "deliverable" / "notes.md")
    checks = {c.name: c for c in run_dod(CONTRACT, root)}
    assert (checks["schema"].status, checks["schema"].detail) == (
        "fail", "deliverable/findings.json: not a regular file; deliver the file itself")
    assert "hunter2" not in str(checks)
