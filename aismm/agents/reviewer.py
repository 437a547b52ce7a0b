"""ref-reviewer: grades a deliverable on its contract's rubric, for every catalog contract.

Reads the checkout (contract, inputs, deliverable, ``verdicts/platform.yaml``) and writes one
verdict YAML at ``$AISMM_OUTPUT``: ``{verdict, score, rubric, comments}``. Grading is
deterministic. A failing platform verdict caps the score below the contract's threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aismm.agents.code_reviewer import analyze
from aismm.agents.runtime import Invocation, run, write_text
from aismm.checks.mutants import default_mutants, run_mutants
from aismm.checks.run_tests import public_functions, referenced_names, run_suite
from aismm.checks.schema_fit import counter_examples, first_error, validator
from aismm.errors import UsageError
from aismm.model import dump_yaml, load_yaml

__all__ = ["grade", "main"]

Grades = dict[str, tuple[int, str]]
CONTRACTS = ("contract.code_review", "contract.schema_design", "contract.unit_tests")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def _pct(part: float, whole: float, empty: int = 100) -> int:
    return round(100 * part / whole) if whole else empty


def _code_review(root: Path) -> Grades:
    data = _json(root / "deliverable" / "findings.json")
    findings = [f for f in (data or {}).get("findings") or [] if isinstance(f, dict)] \
        if isinstance(data, dict) else []
    if data is None:
        return {k: (0, "findings.json is missing or not JSON") for k in
                ("correctness", "coverage", "actionability")}
    sources = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
               for p in sorted((root / "inputs" / "src").glob("*.py"))}
    own = [f for file, text in sources.items() for f in analyze(text, file)]
    lines = {file: text.splitlines() for file, text in sources.items()}

    def confirmed(f: dict[str, Any]) -> bool:
        return any(o.file == f.get("file") and o.rule == f.get("rule")
                   and isinstance(f.get("line"), int) and abs(o.line - f["line"]) <= 2
                   for o in own)

    def anchored(f: dict[str, Any]) -> bool:
        line, file = f.get("line"), f.get("file")
        return (file in lines and isinstance(line, int) and 1 <= line <= len(lines[file])
                and bool(lines[file][line - 1].strip()))

    credit = sum(1.0 if confirmed(f) else 0.5 if anchored(f) else 0.0 for f in findings)
    unanchored = sum(not anchored(f) for f in findings)
    serious = [o for o in own if o.severity in ("error", "warning")]
    reported = [o for o in serious if any(
        f.get("file") == o.file and f.get("rule") == o.rule and isinstance(f.get("line"), int)
        and abs(f["line"] - o.line) <= 2 for f in findings)]
    actionable = [f for f in findings
                  if len(str(f.get("message", "")).split()) >= 4 and f.get("severity")]
    return {
        "correctness": (_pct(credit, len(findings), 100 if not serious else 0),
                        f"{len(findings)} findings, {unanchored} not on a real line"),
        "coverage": (_pct(len(reported), len(serious)),
                     f"{len(reported)} of {len(serious)} errors/warnings I found are reported"),
        "actionability": (_pct(len(actionable), len(findings)),
                          f"{len(actionable)} of {len(findings)} findings say what to do"),
    }


def _schema_design(root: Path) -> Grades:
    schema = _json(root / "deliverable" / "schema.json")
    samples = _json(root / "inputs" / "samples.json") or []
    try:
        check = validator(schema)
        check.check_schema(schema)
    except Exception:  # noqa: BLE001 - any broken schema grades zero
        return {k: (0, "schema.json is missing or not a valid JSON Schema")
                for k in ("acceptance", "strictness", "documentation")}
    accepted = sum(first_error(check, s) is None for s in samples)
    counters = counter_examples(samples)
    rejected = sum(first_error(check, r) is not None for _, r in counters)
    report = _json(root / "deliverable" / "report.json")
    documented = (40 * bool(isinstance(schema, dict) and schema.get("title"))
                  + 30 * bool(isinstance(schema, dict) and schema.get("description"))
                  + 30 * isinstance(report, dict))
    return {
        "acceptance": (_pct(accepted, len(samples)),
                       f"accepts {accepted} of {len(samples)} samples"),
        "strictness": (_pct(rejected, len(counters)),
                       f"rejects {rejected} of {len(counters)} counter-examples"),
        "documentation": (documented, "title, description and report.json"),
    }


def _unit_tests(root: Path) -> Grades:
    tests = root / "deliverable" / "test_module.py"
    module_source = (root / "inputs" / "module.py").read_text(encoding="utf-8")
    try:
        used = referenced_names(tests.read_text(encoding="utf-8"))
    except (FileNotFoundError, SyntaxError, UnicodeDecodeError):
        return {k: (0, "test_module.py is missing or not Python")
                for k in ("correctness", "coverage", "strength")}
    suite = run_suite(tests, module_source, root / "inputs")
    public = public_functions(module_source)
    covered = [f for f in public if f in used]
    if suite.passed:
        results = run_mutants(tests, module_source, root / "inputs",
                              default_mutants(root, module_source))
        killed = sum(k for _, k, _ in results)
        strength = (_pct(killed, len(results)), f"{killed} of {len(results)} stub mutants caught")
    else:
        strength = (0, "mutants not run: the tests do not pass")
    passed = len(suite.outcomes) - len(suite.failures)
    return {
        "correctness": (_pct(passed, len(suite.outcomes), 0) if suite.error is None else 0,
                        suite.error or f"{passed} of {len(suite.outcomes)} tests pass"),
        "coverage": (_pct(len(covered), len(public)),
                     f"{len(covered)} of {len(public)} public functions exercised"),
        "strength": strength,
    }


def _platform(root: Path) -> tuple[bool | None, list[str]]:
    path = root / "verdicts" / "platform.yaml"
    if not path.is_file():
        return None, []
    data = load_yaml(path.read_bytes(), "verdicts/platform.yaml")
    if not isinstance(data, dict):
        return False, ["(unreadable)"]
    failed = [str(c.get("name")) for c in data.get("checks") or []
              if isinstance(c, dict) and c.get("status") != "pass"]
    return data.get("verdict") == "pass", failed


def grade(inv: Invocation) -> dict[str, Any]:
    """The verdict fields for the deliverable in the checkout."""
    contract = inv.contract
    graders = {"contract.code_review": _code_review, "contract.schema_design": _schema_design,
               "contract.unit_tests": _unit_tests}
    grades = graders[contract.id](inv.root)
    known = [score for score, _ in grades.values()]
    fallback = round(sum(known) / len(known)) if known else 0
    rubric = {item.id: grades.get(item.id, (fallback, "no specific test; mean of the rest"))[0]
              for item in contract.dod.review.rubric}
    weights = {item.id: item.weight for item in contract.dod.review.rubric}
    score = round(sum(rubric[k] * weights[k] for k in rubric) / sum(weights.values()))
    threshold = contract.dod.review.threshold
    comments = [f"{k}: {rubric[k]} ({grades[k][1]})" if k in grades else f"{k}: {rubric[k]}"
                for k in rubric]
    platform_ok, failed = _platform(inv.root)
    if platform_ok is False:
        score = min(score, max(threshold - 1, 0))
        comments.append(f"platform DoD failed ({', '.join(failed) or 'see verdicts/platform.yaml'});"
                        f" score capped at {score}")
    elif platform_ok is None:
        comments.append("no platform verdict in the checkout; graded on the deliverable alone")
    return {
        "verdict": "pass" if score >= threshold and platform_ok is not False else "fail",
        "score": score,
        "rubric": rubric,
        "comments": "\n".join(comments),
    }


def _serve(inv: Invocation) -> None:
    if inv.output is None:
        raise UsageError("AISMM_OUTPUT: not set; the hub names the verdict file a reviewer writes")
    write_text(inv.output, dump_yaml(grade(inv)))


def main() -> int:
    """Entry point for ``python -m aismm.agents.reviewer``."""
    return run(_serve, CONTRACTS)


if __name__ == "__main__":
    raise SystemExit(main())
