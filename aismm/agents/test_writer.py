"""ref-test-writer: characterisation tests for a client's module (contract.unit_tests).

Reads ``inputs/module.py`` (and ``inputs/request.json``), imports the module, and records what
each public function really returns: first on its doctest examples, then on inputs derived from
its type hints and defaults. Writes ``deliverable/test_module.py`` (plain ``test_*`` functions,
bare asserts) and ``deliverable/report.json``; tests that fail when re-run are dropped.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import doctest
import importlib.util
import inspect
import io
import json
import math
import re
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aismm.agents.runtime import (
    Invocation,
    fresh_deliverable,
    rework_notes,
    run,
    write_json,
    write_text,
)
from aismm.checks.mutants import Mutant, run_mutants
from aismm.checks.run_tests import MODULE_NAME, public_functions, run_suite
from aismm.core.errors import UsageError

__all__ = ["TestCase", "main", "write_tests"]

MAX_CASES = 10
MAX_RAISES = 2
# First entry of each pool is a typical value: it is the base every other case varies from.
_POOLS: dict[str, list[Any]] = {
    "int": [7, 0, 1, 2, 3, 4, 9, 10, -3],
    "float": [2.5, 0.0, 1.5, 10.0, -2.25],
    "str": ["hello world", "", "Hello, World!", "a-b_c 42"],
    "bool": [True, False],
    "bytes": [b"abc", b""],
    "list[int]": [[12, 18, 8], [], [5], [-4, 6, 10], [3, 1, 2]],
    "list[float]": [[1.0, 2.5, 4.0], [], [3.0]],
    "list[str]": [["b", "a", "c"], [], ["x"]],
    "dict[str,int]": [{"a": 1, "b": 2}, {}],
    "dict[str,str]": [{"a": "x", "b": "y"}, {}],
    "dict[str,float]": [{"a": 1.5, "b": 2.0}, {}],
}
_ALIASES = {"List": "list", "Sequence": "list", "Iterable": "list", "Collection": "list",
            "Dict": "dict", "Mapping": "dict"}
_UNTYPED = [3, "abc", [1, 2, 3]]


@dataclass
class TestCase:
    """One generated test function."""

    name: str
    function: str
    lines: list[str] = field(default_factory=list)


def _load(inputs: Path) -> types.ModuleType:
    sys.path.insert(0, str(inputs.resolve()))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, inputs / "module.py")
    if spec is None or spec.loader is None:
        raise UsageError(f"{inputs / 'module.py'}: cannot be loaded as a Python module;"
                         " the inputs must hold a module.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    with contextlib.redirect_stdout(io.StringIO()):
        spec.loader.exec_module(module)
    return module


def _literal(value: Any) -> str | None:
    if isinstance(value, (set, frozenset)) and value:
        try:
            items = [_literal(v) for v in sorted(value)]
        except TypeError:
            return None
        if None in items:
            return None
        inner = "{" + ", ".join(str(i) for i in items) + "}"
        return inner if isinstance(value, set) else f"frozenset({inner})"
    text = repr(value)
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return text if back == value and type(back) is type(value) else None


def _assertion(expr: str, value: Any) -> list[str]:
    if value is None:
        return [f"assert {expr} is None"]
    if isinstance(value, bool):
        return [f"assert {expr} is {value}"]
    if isinstance(value, float) and math.isfinite(value):
        return [f"assert abs({expr} - {value!r}) < 1e-9"]
    literal = _literal(value)
    if literal is not None:
        return [f"assert {expr} == {literal}"]
    text = repr(value)
    if " at 0x" not in text and len(text) < 500:
        return [f"assert repr({expr}) == {text!r}"]
    return [f"assert type({expr}).__name__ == {type(value).__name__!r}"]


def _raises(expr: str, exc: BaseException) -> list[str]:
    name = type(exc).__name__
    return ["try:", f"    {expr}", f"except {name}:", "    pass", "else:",
            f"    assert False, 'expected {name}'"]


def _nameable(exc: BaseException, module: types.ModuleType) -> bool:
    name = type(exc).__name__
    return getattr(builtins, name, None) is type(exc) or getattr(module, name, None) is type(exc)


def _quiet_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def _doctest_case(name: str, doc: str, module: types.ModuleType) -> TestCase | None:
    examples = doctest.DocTestParser().get_examples(doc)
    namespace = dict(vars(module))
    case = TestCase(f"test_{name}_docstring", name)
    for example in examples:
        source = example.source.strip()
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        node = tree.body[0] if len(tree.body) == 1 else None
        is_print = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name) and node.value.func.id == "print")
        if isinstance(node, ast.Expr) and not is_print:
            expr = f"({source})" if "\n" in source else source
            try:
                value = _quiet_call(eval, compile(source, "<doctest>", "eval"), namespace)
            except Exception as exc:  # the example documents an error
                if _nameable(exc, module):
                    case.lines += _raises(expr, exc)
                continue
            case.lines += _assertion(expr, value)
        else:
            try:
                _quiet_call(exec, compile(source, "<doctest>", "exec"), namespace)
            except Exception:  # a broken setup ends the example run
                break
            case.lines += source.splitlines()
    return case if any(line.lstrip().startswith("assert") for line in case.lines) else None


def _annotation_key(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    text = ast.unparse(node).replace("typing.", "").replace(" ", "").strip("'\"")
    for alias, real in _ALIASES.items():
        text = re.sub(rf"\b{alias}\[", f"{real}[", text)
    return text


def _pool(key: str | None, default: Any) -> list[Any]:
    typed: list[Any] = []
    if key is not None:
        optional = re.fullmatch(r"Optional\[(.+)\]", key)
        parts = [optional.group(1), "None"] if optional else key.split("|")
        for part in parts:
            if part == "None":
                typed.append(None)
            elif re.fullmatch(r"tuple\[(\w+),\.\.\.\]", part):
                inner = part[6:].split(",")[0]
                typed += [tuple(v) for v in _POOLS.get(f"list[{inner}]", [])]
            else:
                typed += _POOLS.get(part, [])
    elif default is not inspect.Parameter.empty and default is not None:
        typed = list(_POOLS.get(type(default).__name__, []))
    if default is not inspect.Parameter.empty:
        return [default, *[v for v in typed if v != default or type(v) is not type(default)]]
    return typed or list(_UNTYPED)


def _argument_sets(node: ast.FunctionDef, fn: Any) -> list[tuple[list[Any], dict[str, Any]]]:
    signature = inspect.signature(fn)
    annotations = {a.arg: a.annotation for a in
                   [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
    params = [p for p in signature.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    pools = [_pool(_annotation_key(annotations.get(p.name)), p.default) for p in params]
    choices = [[0] * len(params)]
    for offset in range(1, 4):
        choices.append([(offset + i) % len(pool) for i, pool in enumerate(pools)])
    for index, pool in enumerate(pools):
        for pick in range(1, len(pool)):
            choice = [0] * len(params)
            choice[index] = pick
            choices.append(choice)
    out = []
    for choice in choices[:MAX_CASES * 4]:
        args, kwargs = [], {}
        for param, pool, pick in zip(params, pools, choice, strict=True):
            if param.kind == param.KEYWORD_ONLY:
                kwargs[param.name] = pool[pick]
            else:
                args.append(pool[pick])
        out.append((args, kwargs))
    return out


def _outcome(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, Any, list[Any]]:
    """('value', result, args after the call) or ('raise', exception, args)."""
    call_args = copy.deepcopy(args)
    try:
        return "value", _quiet_call(fn, *call_args, **copy.deepcopy(kwargs)), call_args
    except Exception as exc:  # recorded as expected behaviour
        return "raise", exc, call_args


def _generated_case(name: str, node: ast.FunctionDef, module: types.ModuleType) -> TestCase | None:
    fn = getattr(module, name)
    case = TestCase(f"test_{name}_cases", name)
    raises = values = 0
    seen: set[str] = set()
    for args, kwargs in _argument_sets(node, fn):
        if values + raises >= MAX_CASES:
            break
        literals = [_literal(a) for a in args] + [_literal(v) for v in kwargs.values()]
        rendered = [r for r in literals if r is not None]
        if len(rendered) != len(literals):
            continue
        call = f"{name}(" + ", ".join(
            [*rendered[:len(args)],
             *(f"{k}={r}" for k, r in zip(kwargs, rendered[len(args):], strict=True))]
        ) + ")"
        if call in seen:
            continue
        seen.add(call)
        first, second = _outcome(fn, args, kwargs), _outcome(fn, args, kwargs)
        if first[0] != second[0] or repr(first[1]) != repr(second[1]):
            continue
        kind, result, after = first
        if kind == "raise":
            if isinstance(result, (TypeError, AttributeError)) or raises >= MAX_RAISES:
                continue
            if _nameable(result, module):
                case.lines += _raises(call, result)
                raises += 1
            continue
        mutated = [i for i, (a, b) in enumerate(zip(args, after, strict=True)) if a != b]
        if mutated:
            for i in mutated:
                case.lines.append(f"arg{i} = {rendered[i]}")
            call = f"{name}(" + ", ".join(
                [f"arg{i}" if i in mutated else r for i, r in enumerate(rendered[:len(args)])]
                + [f"{k}={r}" for k, r in zip(kwargs, rendered[len(args):], strict=True)]
            ) + ")"
            case.lines += _assertion(call, result)
            case.lines += [f"assert arg{i} == {_literal(after[i]) or repr(after[i])}"
                           for i in mutated]
        else:
            case.lines += _assertion(call, result)
        values += 1
    return case if case.lines else None


def _render(cases: list[TestCase], module: types.ModuleType) -> str:
    body = []
    for case in cases:
        body += ["", "", f"def {case.name}():", *[f"    {line}" for line in case.lines]]
    source = "\n".join(body)
    tree = ast.parse(source)
    assigned = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}
    needed = sorted(n for n in used - assigned if hasattr(module, n) and (
        n not in vars(builtins) or getattr(module, n) is not getattr(builtins, n)))
    header = [
        '"""Tests for inputs/module.py, written by ref-test-writer.',
        "",
        "Each expected value was recorded from the module itself (doctest examples first, then",
        "inputs derived from type hints and defaults). Runs under pytest or",
        '`python -m aismm.checks.run_tests`."""',
        "",
    ]
    if needed:
        header += [f"from module import {', '.join(needed)}", ""]
    return "\n".join(header) + source + "\n"


def write_tests(inputs: Path, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The test file and the report for ``inputs/module.py``."""
    source = (inputs / "module.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    nodes = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    wanted = [f for f in request.get("functions") or [] if f in nodes]
    names = [n for n in (wanted or public_functions(source)) if n in nodes]
    module = _load(inputs)
    try:
        cases: list[TestCase] = []
        for name in names:
            doc = ast.get_docstring(nodes[name]) or ""
            for case in (_doctest_case(name, doc, module), _generated_case(name, nodes[name],
                                                                         module)):
                if case is not None:
                    cases.append(case)
        cases, text = _verified(cases, module, source, inputs)
        weak = _weak(text, source, inputs, sorted({c.function for c in cases}))
    finally:
        sys.modules.pop(MODULE_NAME, None)
        if str(inputs.resolve()) in sys.path:
            sys.path.remove(str(inputs.resolve()))
    covered = [n for n in names if any(c.function == n for c in cases)]
    notes = [f"{n}: no deterministic, runnable example found" for n in names if n not in covered]
    notes += [f"{n}: a stub returning None still passes; it may return None" for n in weak]
    report = {
        "schema_version": 1,
        "module": "inputs/module.py",
        "tests": len(cases),
        "functions_covered": covered,
        "functions_uncovered": [n for n in names if n not in covered],
        "notes": notes,
    }
    return text, report


def _verified(cases: list[TestCase], module: types.ModuleType, source: str,
              inputs: Path) -> tuple[list[TestCase], str]:
    """Drop the tests that fail when the written file is run for real."""
    with tempfile.TemporaryDirectory(prefix="aismm-tests-") as tmp:
        path = Path(tmp) / "test_module.py"
        path.write_text(_render(cases, module), encoding="utf-8")
        suite = run_suite(path, source, inputs)
        failing = {o.name for o in suite.failures}
    kept = [c for c in cases if c.name not in failing] if suite.error is None else []
    return kept, _render(kept, module)


def _weak(text: str, source: str, inputs: Path, functions: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="aismm-tests-") as tmp:
        path = Path(tmp) / "test_module.py"
        path.write_text(text, encoding="utf-8")
        results = run_mutants(path, source, inputs, [Mutant(f) for f in functions])
    return [m.function for m, killed, _ in results if not killed]


def _serve(inv: Invocation) -> None:
    fresh_deliverable(inv)
    inputs = inv.root / "inputs"
    request = json.loads((inputs / "request.json").read_text(encoding="utf-8"))
    text, report = write_tests(inputs, request)
    write_text(inv.deliverable / "test_module.py", text)
    write_json(inv.deliverable / "report.json", report)
    if inv.request is not None:
        write_text(inv.deliverable / "notes.md", rework_notes(inv, [
            f"Regenerated {report['tests']} tests and re-ran each against the module.",
            f"Functions covered: {', '.join(report['functions_covered']) or 'none'}.",
            *report["notes"],
        ]))


def main() -> int:
    """Entry point for ``python -m aismm.agents.test_writer``."""
    return run(_serve, ("contract.unit_tests",))


if __name__ == "__main__":
    raise SystemExit(main())
