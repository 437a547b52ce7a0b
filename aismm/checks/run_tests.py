"""unit_tests check: run plain ``test_*`` functions against ``inputs/module.py`` without pytest.

Run in a checkout: ``python -m aismm.checks.run_tests [--min-tests N]``. The client's module is
importable as ``module`` (``inputs/`` is on ``sys.path``). Every ``test*`` function (and ``test*``
method of a ``Test*`` class) runs once, in file order; a test passes when it returns. Prints one
line per problem; exit 0 = pass.

Checks run inside the sandbox; they may start their own child processes, which stay inside it.
The tests run in a child process (:mod:`aismm.checks.testrun`), never in this one: the expected
tests come from the file's syntax, the outcomes from the child's nonce-tagged report, and a run
that ends early (``os._exit``, ``sys.exit`` at import, a crash, a timeout) fails.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from aismm.checks import report
from aismm.checks.testrun import MODULE_NAME, SuiteResult, TestOutcome, collect, run_suite
from aismm.core.errors import UsageError

__all__ = [
    "MODULE_NAME",
    "SuiteResult",
    "TestOutcome",
    "check",
    "main",
    "public_functions",
    "pytest_imports",
    "referenced_names",
    "run_suite",
]

TESTS = "deliverable/test_module.py"
INPUTS = "inputs"
REPORT = "deliverable/report.json"


def public_functions(source: str) -> list[str]:
    """Names of the top-level functions not starting with ``_``, in source order."""
    tree = ast.parse(source)
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and not node.name.startswith("_")
    ]


def referenced_names(source: str) -> set[str]:
    """Every identifier a source loads or reads as an attribute."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
            names.add(node.name)
    return names


def pytest_imports(source: str) -> list[int]:
    """Line numbers where a source imports pytest."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Import)
            and any(a.name.split(".")[0] == "pytest" for a in node.names)
        ) or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pytest"):
            lines.append(node.lineno)
    return lines


def _report_problems(report_text: str, suite: SuiteResult, module_source: str,
                     test_source: str) -> list[str]:
    try:
        report = json.loads(report_text)
    except ValueError as exc:
        return [f"{REPORT}: not valid JSON ({exc}); write a JSON object"]
    if not isinstance(report, dict):
        return [f"{REPORT}: expected an object; see the report schema"]
    problems = []
    if report.get("tests") != len(suite.outcomes):
        problems.append(
            f"{REPORT}: tests is {report.get('tests')!r} but the file has"
            f" {len(suite.outcomes)} tests; make them agree"
        )
    public = set(public_functions(module_source))
    used = referenced_names(test_source)
    for name in report.get("functions_covered") or []:
        if name not in public:
            problems.append(f"{REPORT}: functions_covered names {name!r}, not a public function"
                            " of inputs/module.py; list only real functions")
        elif name not in used:
            problems.append(f"{REPORT}: functions_covered names {name!r} but no test uses it;"
                            " test it or drop it from the list")
    return problems


def check(root: Path, *, tests: str = TESTS, inputs: str = INPUTS, min_tests: int = 1,
          report: str = REPORT) -> list[str]:
    """Problems running ``tests`` against ``inputs/module.py`` in the checkout ``root``."""
    test_path = root / tests
    if not test_path.is_file():
        return [f"{tests}: missing; deliver the test file"]
    try:
        test_source = test_path.read_text(encoding="utf-8")
        pytest_lines = pytest_imports(test_source)
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        return [f"{tests}: not valid Python ({exc}); fix the syntax"]
    problems = [
        f"{tests}: line {line}: imports pytest; use plain asserts (pytest may be absent where"
        " checks run)" for line in pytest_lines
    ]
    if problems:
        return problems
    module_source = (root / inputs / "module.py").read_text(encoding="utf-8")
    report_path = root / report
    try:  # read before the tests run: nothing they write can change what is checked
        report_text = report_path.read_text(encoding="utf-8") if report_path.is_file() else None
    except UnicodeDecodeError as exc:
        return [f"{report}: not valid JSON ({exc}); write a JSON object"]
    suite = run_suite(test_path, module_source, root / inputs)
    if suite.error:
        return [f"{suite.error}; the tests must import and run"]
    for outcome in suite.failures:
        problems.append(f"{tests}::{outcome.name}: fails: {outcome.detail}")
    if not suite.outcomes:
        problems.append(f"{tests}: no tests found; write top-level def test_*() functions")
    elif len(suite.outcomes) < min_tests:
        problems.append(
            f"{tests}: {len(suite.outcomes)} tests found;"
            f" the contract asks for at least {min_tests}"
        )
    if report_text is not None:
        problems.extend(_report_problems(report_text, suite, module_source, test_source))
    return problems


def summary(root: Path, tests: str = TESTS) -> str:
    """The line printed when the check passes."""
    count = len(collect((root / tests).read_bytes()))
    return f"ok: {count} tests pass against inputs/module.py"


def main(argv: list[str] | None = None) -> int:
    """Entry point: check the checkout in the current directory."""
    parser = argparse.ArgumentParser(prog="python -m aismm.checks.run_tests")
    parser.add_argument("--tests", default=TESTS)
    parser.add_argument("--inputs", default=INPUTS)
    parser.add_argument("--report", default=REPORT)
    parser.add_argument("--min-tests", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        problems = check(Path.cwd(), tests=args.tests, inputs=args.inputs,
                         min_tests=args.min_tests, report=args.report)
    except UsageError as exc:
        print(exc)
        return 2
    if not problems:
        print(summary(Path.cwd(), args.tests))
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
