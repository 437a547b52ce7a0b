"""ref-code-reviewer: static review of Python sources with ``ast`` (contract.code_review).

Reads ``inputs/src/*.py`` and writes ``deliverable/findings.json``; on rework also
``deliverable/notes.md``.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import sys
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
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

__all__ = ["RULES", "Finding", "analyze", "main", "review"]

RULES: dict[str, tuple[str, str]] = {
    "syntax-error": ("error", "the file does not parse"),
    "duplicate-dict-key": ("error", "a dict literal repeats a key"),
    "assert-tuple": ("error", "assert on a non-empty tuple is always true"),
    "is-literal": ("error", "'is' compared with a literal"),
    "bare-except": ("warning", "bare except"),
    "mutable-default": ("warning", "mutable default argument"),
    "unreachable-code": ("warning", "code after return/raise/continue/break"),
    "unused-variable": ("warning", "local variable assigned but never used"),
    "eval-used": ("warning", "eval()/exec() on data"),
    "none-comparison": ("warning", "== None / != None"),
    "bool-comparison": ("info", "== True / == False"),
    "shadowed-builtin": ("info", "a name shadows a builtin"),
    "unused-import": ("info", "import never used"),
    "fstring-no-placeholder": ("info", "f-string without placeholders"),
}
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))
_MUTABLE_CALLS = {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque"}
_TERMINAL = {ast.Return: "return", ast.Raise: "raise", ast.Continue: "continue",
             ast.Break: "break"}
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one line of one file."""

    file: str
    line: int
    rule: str
    severity: str
    message: str


def _finding(file: str, line: int, rule: str, message: str) -> Finding:
    return Finding(file, line, rule, RULES[rule][0], message)


def _unused_imports(tree: ast.Module, file: str) -> list[Finding]:
    if file.endswith("__init__.py"):
        return []
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ) and isinstance(node.value, (ast.List, ast.Tuple)):
            used.update(e.value for e in node.value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    continue
                bound = alias.asname or alias.name.split(".")[0]
                if bound not in used:
                    shown = alias.name + (f" as {alias.asname}" if alias.asname else "")
                    out.append(_finding(file, node.lineno, "unused-import",
                                        f"'{shown}' is imported but never used; remove the import"))
    return out


def _own_nodes(func: ast.AST) -> list[ast.AST]:
    """Nodes of a function body, without descending into nested functions or classes."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, (*_FUNCS, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return out


def _unused_variables(tree: ast.Module, file: str) -> list[Finding]:
    out = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        loads = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)
                 and not isinstance(n.ctx, ast.Store)}
        if "locals" in loads or "vars" in loads:
            continue
        declared: set[str] = set()
        stores: dict[str, tuple[int, str]] = {}
        for node in _own_nodes(func):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                declared.update(node.names)
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [node.target]
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                targets = [node.optional_vars]
            elif isinstance(node, ast.ExceptHandler) and node.name:
                stores.setdefault(node.name, (node.lineno, "except"))
            for target in targets:
                if isinstance(target, ast.Name):
                    stores.setdefault(target.id, (target.lineno, "assign"))
        for name, (line, kind) in stores.items():
            if name in loads or name in declared or name.startswith("_"):
                continue
            message = (f"exception bound to '{name}' is never used; drop 'as {name}'"
                       if kind == "except" else
                       f"local variable '{name}' is assigned but never used; remove it or use it")
            out.append(_finding(file, line, "unused-variable", message))
    return out


class _Visitor(ast.NodeVisitor):
    """The single-node rules, tracking whether we are directly in a class body."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.found: list[Finding] = []
        self.class_level = [False]
        self.format_specs: set[int] = set()

    def add(self, node: ast.AST, rule: str, message: str) -> None:
        self.found.append(_finding(self.file, getattr(node, "lineno", 1), rule, message))

    def _shadow(self, node: ast.AST, name: str) -> None:
        if name in BUILTIN_NAMES and not self.class_level[-1]:
            self.add(node, "shadowed-builtin",
                     f"'{name}' shadows the builtin of the same name; rename it")

    def _scope(self, node: ast.AST, class_level: bool) -> None:
        self.class_level.append(class_level)
        self.generic_visit(node)
        self.class_level.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._shadow(node, node.name)
        for deco in node.decorator_list:
            self.visit(deco)
        self.class_level.append(True)
        for stmt in node.body:
            self.visit(stmt)
        self.class_level.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._shadow(node, node.name)
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        self.class_level.append(False)
        for arg in every:
            self._shadow(arg, arg.arg)
        self.class_level.pop()
        positional = [*args.posonlyargs, *args.args]
        defaulted = positional[len(positional) - len(args.defaults):]
        pairs = list(zip(defaulted, args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                  if d is not None]
        for arg, default in pairs:
            kind = _mutable_kind(default)
            if kind:
                self.add(default, "mutable-default",
                         f"default of '{arg.arg}' in {node.name}() is a mutable {kind} shared"
                         " by every call; default to None and create it inside")
        self._scope(node, False)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node, False)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._shadow(node, node.id)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.add(node, "bare-except", "bare 'except:' also catches KeyboardInterrupt and"
                     " SystemExit; catch Exception or a specific error")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            const = next((c for c in (left, right) if isinstance(c, ast.Constant)), None)
            if const is not None and isinstance(op, (ast.Eq, ast.NotEq)):
                word = "is" if isinstance(op, ast.Eq) else "is not"
                symbol = "==" if isinstance(op, ast.Eq) else "!="
                if const.value is None:
                    self.add(node, "none-comparison",
                             f"comparison to None with '{symbol}'; use '{word} None'")
                elif isinstance(const.value, bool):
                    self.add(node, "bool-comparison",
                             f"comparison to {const.value} with '{symbol}'; test the value"
                             " itself (or use 'is' for identity)")
            elif const is not None and isinstance(op, (ast.Is, ast.IsNot)) and isinstance(
                const.value, (str, bytes, int, float, complex)
            ) and not isinstance(const.value, bool):
                self.add(node, "is-literal",
                         f"'{'is' if isinstance(op, ast.Is) else 'is not'}' compares identity"
                         f" with the literal {const.value!r}; use"
                         f" '{'==' if isinstance(op, ast.Is) else '!='}'")
            left = right
        self.generic_visit(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        if node.format_spec is not None:
            self.format_specs.add(id(node.format_spec))
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        if id(node) not in self.format_specs and not any(
            isinstance(v, ast.FormattedValue) for v in node.values
        ):
            self.add(node, "fstring-no-placeholder",
                     "f-string has no placeholders; drop the 'f' prefix")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        first: dict[object, int] = {}
        for key in node.keys:
            if not isinstance(key, ast.Constant):
                continue
            try:
                seen = first.get(key.value)
            except TypeError:
                continue
            if seen is not None:
                self.add(key, "duplicate-dict-key",
                         f"key {key.value!r} repeats the key on line {seen}; the earlier value"
                         " is silently lost")
            else:
                first[key.value] = key.lineno
        self.generic_visit(node)

    def visit_Assert(self, node: ast.Assert) -> None:
        if isinstance(node.test, ast.Tuple) and node.test.elts:
            self.add(node, "assert-tuple", "assert on a non-empty tuple is always true; write"
                     " 'assert condition, message'")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            self.add(node, "eval-used", f"{node.func.id}() runs arbitrary code; parse the data"
                     " instead (ast.literal_eval, json.loads) or dispatch explicitly")
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                self._unreachable(stmts)
        super().generic_visit(node)

    def _unreachable(self, stmts: list[ast.stmt]) -> None:
        for stmt, after in itertools.pairwise(stmts):
            keyword = _TERMINAL.get(type(stmt))
            if keyword:
                self.add(after, "unreachable-code",
                         f"code after '{keyword}' on line {stmt.lineno} can never run; remove it"
                         " or fix the control flow")
                return


def _mutable_kind(node: ast.expr) -> str | None:
    kinds = {ast.List: "list", ast.Dict: "dict", ast.Set: "set", ast.ListComp: "list",
             ast.DictComp: "dict", ast.SetComp: "set"}
    if type(node) in kinds:
        return kinds[type(node)]
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in _MUTABLE_CALLS:
            return name
    return None


def analyze(source: str, file: str) -> list[Finding]:
    """Every finding in one Python source, sorted by line, one per (line, rule)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=file)
    except SyntaxError as exc:
        return [_finding(file, exc.lineno or 1, "syntax-error",
                         f"does not parse: {exc.msg}; fix the syntax before review")]
    visitor = _Visitor(file)
    visitor.visit(tree)
    found = [*visitor.found, *_unused_imports(tree, file), *_unused_variables(tree, file)]
    unique: dict[tuple[int, str], Finding] = {}
    for finding in sorted(found):
        unique.setdefault((finding.line, finding.rule), finding)
    return sorted(unique.values())


ORDERS = {
    "line": lambda f: (f.file, f.line, f.rule),
    "severity": lambda f: (("error", "warning", "info").index(f.severity), f.file, f.line, f.rule),
    "rule": lambda f: (f.rule, f.file, f.line),
}


def review(root: Path, order: str = "line") -> dict[str, Any]:
    """The ``findings.json`` document for the sources under ``root/inputs/src``.

    ``order`` is how findings are listed: by ``line`` (default), ``severity`` or ``rule``. The
    findings are the same; providers who build on this reviewer pick their own presentation
    (and the gate refuses a deliverable identical to another agent's in the same mission).
    """
    files = sorted((root / "inputs" / "src").glob("*.py"))
    findings: list[Finding] = []
    for path in files:
        findings += analyze(path.read_text(encoding="utf-8"), path.relative_to(root).as_posix())
    counts = Counter(f.severity for f in findings)
    return {
        "schema_version": 1,
        "findings": [asdict(f) for f in sorted(findings, key=ORDERS[order])],
        "summary": {
            "files_reviewed": len(files),
            "total": len(findings),
            "by_severity": {s: counts.get(s, 0) for s in ("error", "warning", "info")},
            "by_rule": dict(sorted(Counter(f.rule for f in findings).items())),
        },
    }


def _order() -> str:
    """``--order line|severity|rule`` from the command line (default ``line``)."""
    args = sys.argv[1:]
    if "--order" in args and args.index("--order") + 1 < len(args):
        wanted = args[args.index("--order") + 1]
        if wanted in ORDERS:
            return wanted
    return "line"


def _serve(inv: Invocation) -> None:
    fresh_deliverable(inv)
    document = review(inv.root, _order())
    write_json(inv.deliverable / "findings.json", document)
    if inv.request is not None:
        summary = document["summary"]
        rules = ", ".join(f"{r} ({n})" for r, n in summary["by_rule"].items()) or "none"
        write_text(inv.deliverable / "notes.md", rework_notes(inv, [
            (f"Re-ran the full review of {summary['files_reviewed']} files:"
            f" {summary['total']} findings."),
            f"Findings by rule: {rules}.",
            "Every finding names an existing file and line; duplicates are removed.",
        ]))


def main() -> int:
    """Entry point for ``python -m aismm.agents.code_reviewer``."""
    return run(_serve, ("contract.code_review",))


if __name__ == "__main__":
    raise SystemExit(main())
