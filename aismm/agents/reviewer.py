"""ref-reviewer: grades a deliverable on its contract's rubric, for every catalog contract.

Reads the checkout (contract, inputs, deliverable, ``verdicts/platform.yaml``) and writes one
verdict YAML at ``$AISMM_OUTPUT``: ``{verdict, score, rubric, comments}``. Grading is
deterministic, and the reviewer never executes the deliverable: findings and schemas are read as
data, and unit tests are graded from static analysis (how many tests, which functions they use,
whether they assert) plus the platform-signed ``verdicts/platform.yaml``, whose ``tests-pass``
and ``tests-catch-stubs`` results the platform's sandbox produced.

The platform verdict counts only when its ``deliverable_tree`` is the git tree of the
``deliverable/`` in the checkout. A failing one caps the score below the contract's threshold;
for unit tests a missing or stale one does too, since nothing else shows that the tests run.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aismm.agents.code_reviewer import analyze
from aismm.agents.runtime import (
    ContractInfo,
    Invocation,
    deliverable_tree,
    dump_yaml,
    load_yaml,
    run,
    write_text,
)
from aismm.checks.mutants import default_mutants
from aismm.checks.run_tests import public_functions, referenced_names
from aismm.checks.testrun import collect
from aismm.core.errors import UsageError

__all__ = ["Platform", "grade", "main"]

Grades = dict[str, tuple[int, str]]
CONTRACTS = ("contract.code_review", "contract.schema_design", "contract.unit_tests")
NEEDS_PLATFORM = ("contract.unit_tests",)  # deliverables that are code: their runs are evidence
TESTS_CHECK = "aismm.checks.run_tests"
MUTANTS_CHECK = "aismm.checks.mutants"


@dataclass(frozen=True)
class Platform:
    """What ``verdicts/platform.yaml`` says about the deliverable in the checkout."""

    state: Literal["current", "missing", "stale", "unreadable"]
    passed: bool = False
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (status, detail)
    note: str = ""

    @property
    def failed(self) -> list[str]:
        return [name for name, (status, _) in self.checks.items() if status != "pass"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def _pct(part: float, whole: float, empty: int = 100) -> int:
    return round(100 * part / whole) if whole else empty


def _code_review(root: Path, contract: ContractInfo, platform: Platform) -> Grades:
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


def _schema_design(root: Path, contract: ContractInfo, platform: Platform) -> Grades:
    # jsonschema only for schema deliverables: it is most of a cold reviewer's imports
    from aismm.checks.schema_fit import counter_examples, first_error, validator  # noqa: PLC0415

    schema = _json(root / "deliverable" / "schema.json")
    samples = _json(root / "inputs" / "samples.json") or []
    try:
        check = validator(schema)
        check.check_schema(schema)
    except Exception:  # any broken schema grades zero
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


def _check_name(contract: ContractInfo, module: str) -> str:
    """The name of the DoD command check that runs ``python -m <module>``."""
    return next((name for name, run in contract.checks if module in run), module)


def _test_nodes(tree: ast.Module) -> dict[str, ast.AST]:
    nodes: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    nodes[f"{node.name}.{item.name}"] = item
    return nodes


def _unit_tests(root: Path, contract: ContractInfo, platform: Platform) -> Grades:
    """Static analysis plus the platform's test results; the tests themselves never run here."""
    module_source = (root / "inputs" / "module.py").read_text(encoding="utf-8")
    try:
        test_source = (root / "deliverable" / "test_module.py").read_text(encoding="utf-8")
        specs = collect(test_source)
        used = referenced_names(test_source)
        nodes = _test_nodes(ast.parse(test_source))
    except (FileNotFoundError, SyntaxError, UnicodeDecodeError, ValueError):
        return {k: (0, "test_module.py is missing or not Python")
                for k in ("correctness", "coverage", "strength")}
    public = public_functions(module_source)
    covered = [f for f in public if f in used]
    coverage = (_pct(len(covered), len(public)),
                f"{len(covered)} of {len(public)} public functions exercised")
    count = len(specs)
    asserting = sum(not s.problem and any(isinstance(n, (ast.Assert, ast.Raise))
                                          for n in ast.walk(nodes[s.name])) for s in specs)
    if platform.state != "current":
        why = f"{platform.note}; I never run the deliverable's code, so nothing shows the tests run"
        return {"correctness": (0, why), "coverage": coverage, "strength": (0, why)}

    tests_name = _check_name(contract, TESTS_CHECK)
    status, detail = platform.checks.get(tests_name, ("missing", ""))
    if status == "pass":
        failing = 0
    else:
        failing = len({s.name for s in specs if f"::{s.name}: fails:" in detail})
        if "the tests must import and run" in detail or status == "missing":
            failing = count
    passing = count - failing
    correctness = (_pct(min(passing, asserting), count, 0),
                   f"platform {tests_name}: {status}; {passing} of {count} tests pass,"
                   f" {asserting} assert something")

    mutants_name = _check_name(contract, MUTANTS_CHECK)
    mutants = len(default_mutants(root, module_source))
    status, detail = platform.checks.get(mutants_name, ("missing", ""))
    survivors = sum("replaced by a stub returning None breaks no test" in line
                    for line in detail.splitlines())
    if status == "pass":
        strength = (100 if count else 0, f"platform {mutants_name}: pass; each of {mutants}"
                    " stub mutants makes a test fail")
    elif survivors == 0:
        strength = (0, f"platform {mutants_name}: {status}; the tests do not pass unmodified")
    else:
        strength = (_pct(mutants - min(survivors, mutants), mutants),
                    f"platform {mutants_name}: fail; {mutants - min(survivors, mutants)} of"
                    f" {mutants} stub mutants caught")
    return {"correctness": correctness, "coverage": coverage, "strength": strength}


def _platform(root: Path) -> Platform:
    path = root / "verdicts" / "platform.yaml"
    if not path.is_file():
        return Platform("missing", note="no platform verdict in the checkout")
    try:
        data = load_yaml(path.read_bytes(), "verdicts/platform.yaml")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Platform("unreadable", note="verdicts/platform.yaml is unreadable")
    current = deliverable_tree(root)
    judged = data.get("deliverable_tree")
    if current is None or judged != current:
        return Platform("stale", note=f"the platform verdict judges deliverable tree"
                        f" {str(judged)[:12]}, not the current {str(current)[:12]}")
    checks = {str(c.get("name")): (str(c.get("status")), str(c.get("detail", "")))
              for c in data.get("checks") or [] if isinstance(c, dict)}
    return Platform("current", data.get("verdict") == "pass", checks)


def grade(inv: Invocation) -> dict[str, Any]:
    """The verdict fields for the deliverable in the checkout."""
    contract = inv.contract
    graders = {"contract.code_review": _code_review, "contract.schema_design": _schema_design,
               "contract.unit_tests": _unit_tests}
    platform = _platform(inv.root)
    grades = graders[contract.id](inv.root, contract, platform)
    known = [score for score, _ in grades.values()]
    fallback = round(sum(known) / len(known)) if known else 0
    rubric = {key: grades.get(key, (fallback, "no specific test; mean of the rest"))[0]
              for key, _ in contract.rubric}
    weights = dict(contract.rubric)
    score = round(sum(rubric[k] * weights[k] for k in rubric) / sum(weights.values()))
    threshold = contract.threshold
    comments = [f"{k}: {rubric[k]} ({grades[k][1]})" if k in grades else f"{k}: {rubric[k]}"
                for k in rubric]
    failed = platform.state == "unreadable" or (platform.state == "current" and not platform.passed)
    if failed:
        score = min(score, max(threshold - 1, 0))
        why = ", ".join(platform.failed) or platform.note or "see verdicts/platform.yaml"
        comments.append(f"platform DoD failed ({why}); score capped at {score}")
    elif platform.state != "current" and contract.id in NEEDS_PLATFORM:
        score = min(score, max(threshold - 1, 0))
        comments.append(f"{platform.note}; the tests are unproven, score capped at {score}")
    elif platform.state != "current":
        comments.append(f"{platform.note}; graded on the deliverable alone")
    return {
        "verdict": "pass" if score >= threshold and not failed else "fail",
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
