"""unit_tests check: replacing any public function by a stub returning None breaks a test.

Run in a checkout: ``python -m aismm.checks.mutants``. The functions are those named in
``inputs/request.json`` (``functions``) or else every public top-level function of
``inputs/module.py``. ``--spec FILE`` reads other mutants (``[{function, body}]``) and ``--json``
prints every outcome as JSON instead of problems (used by benchmark scoring). Exit 0 = pass.

Checks run inside the sandbox; they may start their own child processes, which stay inside it.
Each run is a child process (:mod:`aismm.checks.testrun`) in a fresh copy whose
``inputs/module.py`` holds the mutated source, so disk and import agree. A mutant counts as killed
only when its run completed and at least one test raised: a crash, a timeout, ``os._exit`` or a
missing report kills nothing, and a forged "pass" survives every mutant.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from aismm.checks import report
from aismm.checks.run_tests import INPUTS, TESTS, SuiteResult, public_functions, run_suite
from aismm.core.errors import UsageError

__all__ = ["Mutant", "as_json", "check", "default_mutants", "main", "make_mutant", "run_mutants"]

STUB = "return None"


@dataclass(frozen=True)
class Mutant:
    """A change to one function: its whole body replaced by ``body``."""

    function: str
    body: str = STUB


def _find(tree: ast.Module, target: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    scope: list[ast.stmt] = tree.body
    *owners, name = target.split(".")
    for owner in owners:
        cls = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            return None
        scope = cls.body
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    return None


def make_mutant(source: str, mutant: Mutant) -> str:
    """The module source with one function's body replaced; KeyError if there is no such one."""
    tree = ast.parse(source)
    node = _find(tree, mutant.function)
    if node is None:
        raise KeyError(mutant.function)
    node.body = ast.parse(textwrap.dedent(mutant.body)).body or [ast.Pass()]
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def default_mutants(root: Path, module_source: str) -> list[Mutant]:
    """One stub mutant per function the request names, or per public function."""
    public = public_functions(module_source)
    try:
        request = json.loads((root / INPUTS / "request.json").read_text(encoding="utf-8"))
        named = [f for f in request.get("functions") or [] if f in public]
    except (FileNotFoundError, ValueError, AttributeError):
        named = []
    return [Mutant(name) for name in (named or public)]


def run_mutants(
    tests: Path, module_source: str, inputs: Path, mutants: list[Mutant]
) -> list[tuple[Mutant, bool, SuiteResult | None]]:
    """(mutant, killed, suite result) for each mutant; an unknown function counts as not killed.

    Killed means the child run completed and at least one test raised.
    """
    out: list[tuple[Mutant, bool, SuiteResult | None]] = []
    for mutant in mutants:
        try:
            source = make_mutant(module_source, mutant)
        except (KeyError, SyntaxError):
            out.append((mutant, False, None))
            continue
        suite = run_suite(tests, source, inputs, per_test_seconds=5.0)
        out.append((mutant, suite.raised, suite))
    return out


def check(root: Path, *, tests: str = TESTS, inputs: str = INPUTS) -> list[str]:
    """Problems: surviving stub mutants (or tests that fail before any mutation)."""
    test_path = root / tests
    if not test_path.is_file():
        return [f"{tests}: missing; deliver the test file"]
    module_source = (root / inputs / "module.py").read_text(encoding="utf-8")
    baseline = run_suite(test_path, module_source, root / inputs)
    if not baseline.passed:
        why = baseline.error or ("no tests found" if not baseline.outcomes else
                                 f"{len(baseline.failures)} of {len(baseline.outcomes)} fail")
        return [(f"{tests}: the tests do not all pass against the unmodified module ({why});"
                " fix them first (see the tests check)")]
    problems = []
    for mutant, killed, _ in run_mutants(test_path, module_source, root / inputs,
                                         default_mutants(root, module_source)):
        if not killed:
            problems.append(
                f"{inputs}/module.py: {mutant.function}() replaced by a stub returning None"
                " breaks no test; assert on its results"
            )
    return problems


def as_json(root: Path, tests: str, inputs: str, mutants: list[Mutant] | None) -> str:
    test_path = root / tests
    module_source = (root / inputs / "module.py").read_text(encoding="utf-8")
    if not test_path.is_file():
        return json.dumps({"baseline": {"passed": False, "error": f"{tests}: missing",
                                        "tests": 0, "failures": []}, "mutants": []})
    baseline = run_suite(test_path, module_source, root / inputs)
    chosen = mutants if mutants is not None else default_mutants(root, module_source)
    results = run_mutants(test_path, module_source, root / inputs, chosen)
    return json.dumps({
        "baseline": {
            "passed": baseline.passed,
            "error": baseline.error,
            "tests": len(baseline.outcomes),
            "failures": [f"{o.name}: {o.detail}" for o in baseline.failures],
        },
        "mutants": [
            {"function": m.function, "body": m.body, "killed": killed}
            for m, killed, _ in results
        ],
    }, indent=2)


def main(argv: list[str] | None = None) -> int:
    """Entry point: check the checkout in the current directory."""
    parser = argparse.ArgumentParser(prog="python -m aismm.checks.mutants")
    parser.add_argument("--tests", default=TESTS)
    parser.add_argument("--inputs", default=INPUTS)
    parser.add_argument("--spec", help="JSON file: [{function, body}] mutants to run")
    parser.add_argument("--json", action="store_true", help="print every outcome as JSON")
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if args.json:
            mutants = None
            if args.spec:
                spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
                mutants = [Mutant(m["function"], m.get("body", STUB)) for m in spec]
            print(as_json(root, args.tests, args.inputs, mutants))
            return 0
        problems = check(root, tests=args.tests, inputs=args.inputs)
    except UsageError as exc:
        print(exc, file=sys.stderr if args.json else sys.stdout)
        return 2
    if not problems:
        source = (root / args.inputs / "module.py").read_text(encoding="utf-8")
        print(f"ok: each of the {len(default_mutants(root, source))} stub mutants makes a test"
              " fail")
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
