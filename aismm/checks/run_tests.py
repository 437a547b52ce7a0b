"""unit_tests check: run plain ``test_*`` functions against ``inputs/module.py`` without pytest.

Run in a checkout: ``python -m aismm.checks.run_tests [--min-tests N]``. The client's module is
importable as ``module`` (``inputs/`` is on ``sys.path``). Every ``test*`` function (and ``test*``
method of a ``Test*`` class) runs once, in file order; a test passes when it returns. Prints one
line per problem; exit 0 = pass.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import inspect
import io
import itertools
import json
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aismm.checks import report

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

MODULE_NAME = "module"
TESTS = "deliverable/test_module.py"
INPUTS = "inputs"
REPORT = "deliverable/report.json"
_counter = itertools.count()


class TestTimeout(Exception):
    """A test ran longer than its time budget."""


@dataclass(frozen=True)
class TestOutcome:
    """The result of one test function."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class SuiteResult:
    """All outcomes of a test file, or the reason it could not be loaded."""

    outcomes: tuple[TestOutcome, ...]
    error: str | None = None

    @property
    def failures(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if not o.passed]

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.outcomes) and not self.failures


def public_functions(source: str) -> list[str]:
    """Names of the top-level functions not starting with ``_``, in source order."""
    tree = ast.parse(source)
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_")
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
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pytest" for a in node.names) or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pytest":
            lines.append(node.lineno)
    return lines


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return " ".join(text.split())[:200]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        raise TestTimeout(f"took longer than {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _collect(tests: types.ModuleType) -> list[tuple[str, Callable[[], Any] | None, str]]:
    """(name, zero-argument callable or None, why not runnable) for every test, in file order."""
    found: list[tuple[str, Callable[[], Any] | None, str]] = []

    def add(name: str, fn: Callable[..., Any]) -> None:
        if inspect.iscoroutinefunction(fn):
            found.append((name, None, "is async; write a plain function"))
            return
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if params:
            names = ", ".join(p.name for p in params)
            found.append((name, None, f"takes arguments ({names}); fixtures are not supported"))
        else:
            found.append((name, fn, ""))

    for name, obj in list(vars(tests).items()):
        if not name.startswith(("test", "Test")):
            continue
        if inspect.isfunction(obj) and obj.__module__ == tests.__name__ and name.startswith("test"):
            add(name, obj)
        elif inspect.isclass(obj) and obj.__module__ == tests.__name__ and name.startswith("Test"):
            try:
                instance = obj()
            except Exception as exc:  # noqa: BLE001 - any failure is the test's failure
                found.append((name, None, f"cannot be instantiated ({_describe(exc)})"))
                continue
            for attr in vars(obj):
                method = getattr(instance, attr)
                if attr.startswith("test") and inspect.ismethod(method):
                    add(f"{name}.{attr}", method)
    return found


def run_suite(
    tests: Path, module_source: str, inputs: Path, *, per_test_seconds: float = 10.0
) -> SuiteResult:
    """Load ``module_source`` as ``module``, import the test file and run every test in it."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ next to the client's or the agent's files
    sys.path.insert(0, str(inputs.resolve()))
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = str(inputs / "module.py")
    previous = sys.modules.get(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    test_name = f"_aismm_tests_{next(_counter)}"
    try:
        try:
            code = compile(module_source, str(inputs / "module.py"), "exec")
            with _quiet(), _time_limit(per_test_seconds):
                exec(code, module.__dict__)  # noqa: S102 - the client's own module, sandboxed
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is the outcome
            return SuiteResult((), f"inputs/module.py: fails to import ({_describe(exc)})")
        spec = importlib.util.spec_from_file_location(test_name, tests)
        if spec is None or spec.loader is None:
            return SuiteResult((), f"{tests.name}: cannot be loaded as a Python module")
        test_module = importlib.util.module_from_spec(spec)
        sys.modules[test_name] = test_module
        try:
            with _quiet(), _time_limit(per_test_seconds):
                spec.loader.exec_module(test_module)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is the outcome
            return SuiteResult((), f"{tests.name}: fails to import ({_describe(exc)})")
        outcomes = []
        for name, fn, why in _collect(test_module):
            if fn is None:
                outcomes.append(TestOutcome(name, False, why))
                continue
            try:
                with _quiet(), _time_limit(per_test_seconds):
                    fn()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is the outcome
                outcomes.append(TestOutcome(name, False, _describe(exc)))
            else:
                outcomes.append(TestOutcome(name, True))
        return SuiteResult(tuple(outcomes))
    finally:
        sys.dont_write_bytecode = saved_bytecode
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if name in (MODULE_NAME, test_name) or origin.startswith(str(inputs.resolve())):
                del sys.modules[name]
        if previous is not None:
            sys.modules[MODULE_NAME] = previous
        else:
            sys.modules.pop(MODULE_NAME, None)


def _report_problems(report_path: Path, suite: SuiteResult, module_source: str,
                     test_source: str) -> list[str]:
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
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
    suite = run_suite(test_path, module_source, root / inputs)
    if suite.error:
        return [f"{suite.error}; the tests must import and run"]
    for outcome in suite.failures:
        problems.append(f"{tests}::{outcome.name}: fails: {outcome.detail}")
    if len(suite.outcomes) < min_tests:
        problems.append(
            f"{tests}: {len(suite.outcomes)} tests found; the contract asks for at least {min_tests}"
        )
    if (root / report).is_file():
        problems.extend(_report_problems(root / report, suite, module_source, test_source))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Entry point: check the checkout in the current directory."""
    parser = argparse.ArgumentParser(prog="python -m aismm.checks.run_tests")
    parser.add_argument("--tests", default=TESTS)
    parser.add_argument("--inputs", default=INPUTS)
    parser.add_argument("--report", default=REPORT)
    parser.add_argument("--min-tests", type=int, default=1)
    args = parser.parse_args(argv)
    problems = check(Path.cwd(), tests=args.tests, inputs=args.inputs,
                     min_tests=args.min_tests, report=args.report)
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
