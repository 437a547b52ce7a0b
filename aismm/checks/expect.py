"""Score a deliverable 0-100 against a benchmark task's ``expect.yaml``.

``expect.yaml`` per contract::

    code_review:    must_find: [{file, line?, rule}]   recall (70 %)
                    may_find:  [{file?, line?, rule?}]  findings that are not false positives
                                                        precision (30 %)
    schema_design:  must_accept: [record]               the samples are always added
                    must_reject: [{record, why}]        share of records judged right
    unit_tests:     min_tests: N                        20 %, in proportion
                    must_cover: [function]              30 %, referenced by the tests
                    mutants: [{function, body}]         50 %, killed (plus a stub per must_cover)
                                                        0 when the tests fail unmodified

A program run inside the sandbox (``python -m aismm.checks.expect CONTRACT TASK DELIVERABLE``
prints ``{"score": N, "details": [...]}``): scoring parses, validates and runs what an agent
delivered, so the hub never does it in its own process (:mod:`aismm.services.scoring`). The
unit tests run in the unit-test child; a run that fails scores 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from aismm.checks.mutants import STUB, Mutant
from aismm.checks.mutants import as_json as mutants_json
from aismm.checks.run_tests import INPUTS, TESTS, referenced_names
from aismm.checks.schema_fit import first_error, validator

__all__ = ["evaluate", "main"]


def evaluate(contract_id: str, task_dir: Path, deliverable_dir: Path) -> tuple[int, list[str]]:
    """Score ``deliverable_dir`` against ``task_dir/expect.yaml``; (0-100, detail lines)."""
    expect = yaml.safe_load((task_dir / "expect.yaml").read_text(encoding="utf-8")) or {}
    name = contract_id.partition("@")[0]
    if name == "contract.code_review":
        return _code_review(expect, deliverable_dir)
    if name == "contract.schema_design":
        return _schema_design(expect, task_dir, deliverable_dir)
    if name == "contract.unit_tests":
        return _unit_tests(expect, task_dir, deliverable_dir)
    raise ValueError(f"{contract_id}: no benchmark scoring for this contract")


def _load_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"{path.name}: missing"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{path.name}: not valid JSON ({exc})"


def _matches(entry: dict[str, Any], finding: dict[str, Any]) -> bool:
    return all(finding.get(key) == entry[key] for key in ("file", "line", "rule") if key in entry)


def _label(entry: dict[str, Any]) -> str:
    where = entry.get("file", "*") + (f":{entry['line']}" if "line" in entry else "")
    return f"{where} {entry.get('rule', '*')}"


def _code_review(expect: dict[str, Any], deliverable: Path) -> tuple[int, list[str]]:
    data, error = _load_json(deliverable / "findings.json")
    if error:
        return 0, [error]
    findings = [f for f in (data or {}).get("findings") or [] if isinstance(f, dict)]
    must = expect.get("must_find") or []
    may = expect.get("may_find") or []
    details = []
    used: set[int] = set()
    for entry in must:
        hit = next(
            (i for i, f in enumerate(findings) if i not in used and _matches(entry, f)), None
        )
        if hit is None:
            details.append(f"missed: {_label(entry)}")
        else:
            used.add(hit)
    extras = [
        f for i, f in enumerate(findings)
        if i not in used and not any(_matches(e, f) for e in [*must, *may])
    ]
    details.extend(f"unexpected: {_label(f)}" for f in extras)
    recall = (len(must) - sum(d.startswith("missed") for d in details)) / len(must) if must else 1.0
    precision = (len(findings) - len(extras)) / len(findings) if findings else float(not must)
    return round(100 * (0.7 * recall + 0.3 * precision)), details


def _schema_design(expect: dict[str, Any], task: Path,
                   deliverable: Path) -> tuple[int, list[str]]:
    schema, error = _load_json(deliverable / "schema.json")
    if error:
        return 0, [error]
    samples = json.loads((task / "inputs" / "samples.json").read_text(encoding="utf-8"))
    try:
        check = validator(schema)
        check.check_schema(schema)
    except Exception as exc:  # any broken schema scores zero
        return 0, [f"schema.json: not a valid JSON Schema ({str(exc).splitlines()[0]})"]
    cases: list[tuple[str, Any, bool]] = [
        (f"sample {i}", s, True) for i, s in enumerate(samples)
    ]
    cases += [(f"must_accept {i}", r, True) for i, r in enumerate(expect.get("must_accept") or [])]
    cases += [
        (f"must_reject {i} ({r.get('why', 'no reason given')})", r["record"], False)
        for i, r in enumerate(expect.get("must_reject") or [])
    ]
    details = []
    for label, record, accept in cases:
        problem = first_error(check, record)
        if accept and problem is not None:
            details.append(f"rejects {label}: {problem}")
        elif not accept and problem is None:
            details.append(f"accepts {label}")
    return round(100 * (len(cases) - len(details)) / len(cases)), details


def _unit_tests(expect: dict[str, Any], task: Path, deliverable: Path) -> tuple[int, list[str]]:
    tests = deliverable / "test_module.py"
    if not tests.is_file():
        return 0, ["test_module.py: missing"]
    must_cover = list(expect.get("must_cover") or [])
    mutants = [{"function": f, "body": "return None"} for f in must_cover]
    mutants += [{"function": m["function"], "body": m["body"]} for m in expect.get("mutants") or []]
    result, why = _run_mutants(task, deliverable, mutants)
    if result is None:
        return 0, [why]
    baseline = result["baseline"]
    if not baseline["passed"]:
        why = baseline["error"] or "; ".join(baseline["failures"][:3]) or "no tests"
        return 0, [f"tests do not pass against the unmodified module: {why}"]
    details = []
    min_tests = int(expect.get("min_tests", 1))
    if baseline["tests"] < min_tests:
        details.append(f"{baseline['tests']} tests; expected at least {min_tests}")
    try:
        used = referenced_names(tests.read_text(encoding="utf-8"))
    except SyntaxError:
        used = set()
    covered = [f for f in must_cover if f in used]
    details.extend(f"not covered: {f}" for f in must_cover if f not in covered)
    killed = [m for m in result["mutants"] if m["killed"]]
    details.extend(
        f"mutant survived: {m['function']}: {m['body']}"
        for m in result["mutants"]
        if not m["killed"]
    )
    score = (
        20 * min(1.0, baseline["tests"] / min_tests if min_tests else 1.0)
        + 30 * (len(covered) / len(must_cover) if must_cover else 1.0)
        + 50 * (len(killed) / len(result["mutants"]) if result["mutants"] else 1.0)
    )
    return round(score), details


def _run_mutants(task: Path, deliverable: Path,
                 mutants: list[dict[str, str]]) -> tuple[dict[str, Any] | None, str]:
    """The mutants check's JSON for this deliverable; (None, why) when the run failed.

    The agent's tests run only in the unit-test child (:mod:`aismm.checks.testrun`), which this
    program starts inside the sandbox it runs in.
    """
    with tempfile.TemporaryDirectory(prefix="aismm-expect-") as tmp:
        root = Path(tmp) / "checkout"
        root.mkdir()
        shutil.copytree(task / "inputs", root / "inputs")
        shutil.copytree(deliverable, root / "deliverable", symlinks=True)
        chosen = [Mutant(m["function"], m.get("body", STUB)) for m in mutants]
        try:
            parsed = json.loads(mutants_json(root, TESTS, INPUTS, chosen))
        except (OSError, ValueError) as exc:
            return None, f"test run failed ({str(exc)[:200]})"
    if not _well_formed(parsed, len(mutants)):
        return None, "test run failed (its output is not the mutants check's JSON)"
    return parsed, ""


def _well_formed(data: Any, count: int) -> bool:
    """Whether ``data`` has the shape ``mutants --json`` prints for ``count`` mutants."""
    if not isinstance(data, dict) or not isinstance(data.get("baseline"), dict):
        return False
    base, mutants = data["baseline"], data.get("mutants")
    return (isinstance(base.get("passed"), bool) and type(base.get("tests")) is int
            and isinstance(base.get("failures"), list)
            and all(isinstance(f, str) for f in base["failures"])
            and (base.get("error") is None or isinstance(base.get("error"), str))
            and isinstance(mutants, list) and len(mutants) == count
            and all(isinstance(m, dict) and isinstance(m.get("killed"), bool)
                    and isinstance(m.get("function"), str) and isinstance(m.get("body"), str)
                    for m in mutants))


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the score of a deliverable as JSON."""
    parser = argparse.ArgumentParser(prog="python -m aismm.checks.expect")
    parser.add_argument("contract")
    parser.add_argument("task", type=Path)
    parser.add_argument("deliverable", type=Path)
    args = parser.parse_args(argv)
    try:
        score, details = evaluate(args.contract, args.task, args.deliverable)
    except (OSError, ValueError) as exc:
        score, details = 0, [f"cannot score: {str(exc)[:200]}"]
    print(json.dumps({"score": score, "details": details}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
