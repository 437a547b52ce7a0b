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

Returns the score and one line per miss. Unit tests run in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from aismm.checks.run_tests import referenced_names
from aismm.checks.schema_fit import first_error, validator

__all__ = ["evaluate"]


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
        hit = next((i for i, f in enumerate(findings) if i not in used and _matches(entry, f)), None)
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
    except Exception as exc:  # noqa: BLE001 - any broken schema scores zero
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
    result = _run_mutants(task, deliverable, mutants)
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
        f"mutant survived: {m['function']}: {m['body']}" for m in result["mutants"] if not m["killed"]
    )
    score = (
        20 * min(1.0, baseline["tests"] / min_tests if min_tests else 1.0)
        + 30 * (len(covered) / len(must_cover) if must_cover else 1.0)
        + 50 * (len(killed) / len(result["mutants"]) if result["mutants"] else 1.0)
    )
    return round(score), details


def _run_mutants(task: Path, deliverable: Path, mutants: list[dict[str, str]]) -> dict[str, Any]:
    from aismm.checks.local import scrubbed_env

    with tempfile.TemporaryDirectory(prefix="aismm-expect-") as tmp:
        root = Path(tmp)
        shutil.copytree(task / "inputs", root / "inputs")
        shutil.copytree(deliverable, root / "deliverable")
        (root / "spec.json").write_text(json.dumps(mutants), encoding="utf-8")
        argv = [sys.executable, "-m", "aismm.checks.mutants", "--json", "--spec", "spec.json"]
        try:
            done = subprocess.run(argv, cwd=root, env=scrubbed_env(root), capture_output=True,
                                  text=True, timeout=120, check=False)
            parsed: dict[str, Any] = json.loads(done.stdout)
            return parsed
        except (subprocess.TimeoutExpired, ValueError) as exc:
            return {"baseline": {"passed": False, "error": f"test run failed ({exc})",
                                 "tests": 0, "failures": []}, "mutants": []}
