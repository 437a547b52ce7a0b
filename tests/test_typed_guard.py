"""Guard: records cross module boundaries as typed models, not ``dict[str, Any]``.

Read from the syntax tree (no text search): every public function and public method in
``aismm/services``, ``aismm/state`` and ``aismm/infra`` has its return annotation expanded
through the type aliases it names (``ExecutionRow = dict[str, Any]`` and aliases imported from
other ``aismm`` modules) and is refused if a ``dict[str, Any]`` (or ``dict[str, object]``) or a
bare ``Any`` remains anywhere in it, unless the allow-list below names it with a reason. The
one serialiser of a typed model (``to_json``/``to_dict``) is the boundary by design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aismm"
GUARDED = ("services", "state", "infra")
SERIALISERS = {"to_json", "to_dict"}  # a typed model's one way out to JSON

# "module:qualname" -> why it may still return a free-form JSON document.
ALLOWED: dict[str, str] = {
    # JSON documents free-form by nature
    "aismm.services.export:reputation_json": "roster/reputation.json as written: the "
    "serialiser of a map of typed Reputation (Reputation.to_dict() per agent)",
    "aismm.services.mission:show": "the document `mission show --json` prints (refs, their "
    "signers, the files on main), built for that one output",
    "aismm.services.orchestration:tree": "the mission tree, a recursive JSON document "
    "(mission tree --json)",
    "aismm.services.audit:ndjson_rows": "rows of an export's NDJSON files, read back to be "
    "checked against the manifest",
    "aismm.services.worker:handle_event": "an outbox event's result, stored as JSON text in "
    "hub.db (EventRow.result) and printed back as it was stored",
    # rows that go out as the export's NDJSON documents, as stored
    "aismm.infra.store:Store.log_rows": "the export's state/log.ndjson rows, as stored",
    "aismm.infra.store:Store.executions": "the execution log's records (also the export's "
    "NDJSON rows); scored through core.reputation.Execution.of",
    "aismm.services.lifecycle:failed_runs": "execution records as Store.executions returns "
    "them, grouped by (mission, agent)",
    "aismm.infra.ledger:Ledger.dump": "the export's ledger NDJSON rows (transfers and "
    "closures, each Transfer.to_dict()/Closure.to_dict())",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for layer in GUARDED:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            rel = path.relative_to(PACKAGE.parent).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            yield name, ast.parse(path.read_text(), str(path))


def _aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level type aliases: ``Name = <type>`` or ``Name: TypeAlias = <type>``."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                isinstance(node.value, (ast.Subscript, ast.BinOp)):
            out[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.value is not None and ast.unparse(node.annotation).endswith("TypeAlias"):
            out[node.target.id] = node.value
    return out


def _imported(tree: ast.Module, index: dict[str, dict[str, ast.expr]]) -> dict[str, ast.expr]:
    """Aliases a module imports by name from another aismm module."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aismm"):
            for name in node.names:
                found = index.get(node.module, {}).get(name.name)
                if found is not None:
                    out[name.asname or name.name] = found
    return out


def _free_form(annotation: ast.expr, aliases: dict[str, ast.expr], depth: int = 0) -> bool:
    """Whether ``dict[str, Any]``/``dict[str, object]`` or a bare ``Any`` is in the type."""
    if depth > 10:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _free_form(ast.parse(annotation.value, mode="eval").body, aliases, depth + 1)
    if isinstance(annotation, ast.Name):
        if annotation.id == "Any":
            return True
        target = aliases.get(annotation.id)
        return target is not None and _free_form(target, aliases, depth + 1)
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "Any"
    if isinstance(annotation, ast.Subscript):
        base = ast.unparse(annotation.value).rsplit(".", 1)[-1]
        args = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else \
            [annotation.slice]
        if base in ("dict", "Dict") and len(args) == 2 and \
                ast.unparse(args[1]).rsplit(".", 1)[-1] in ("Any", "object"):
            return True
        if base == "Callable":
            return False  # a callable's parameters are not a record it returns
        return any(_free_form(a, aliases, depth + 1) for a in args)
    if isinstance(annotation, ast.BinOp):  # X | Y
        return _free_form(annotation.left, aliases, depth + 1) or \
            _free_form(annotation.right, aliases, depth + 1)
    if isinstance(annotation, ast.Tuple):
        return any(_free_form(e, aliases, depth + 1) for e in annotation.elts)
    return False


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef |
                                                          ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        not item.name.startswith("_") and item.name not in SERIALISERS:
                    yield f"{node.name}.{item.name}", item


def offenders(modules: list[tuple[str, ast.Module]]) -> dict[str, str]:
    """``module:qualname`` -> the offending return annotation, for every public function."""
    index = {name: _aliases(tree) for name, tree in modules}
    found: dict[str, str] = {}
    for name, tree in modules:
        aliases = {**_imported(tree, index), **index[name]}
        for qualname, fn in _public_functions(tree):
            if fn.returns is not None and _free_form(fn.returns, aliases):
                found[f"{name}:{qualname}"] = ast.unparse(fn.returns)
    return found


def test_no_public_function_returns_a_dict_row_outside_the_allow_list() -> None:
    found = offenders(list(_modules()))
    unexplained = {k: v for k, v in found.items() if k not in ALLOWED}
    assert unexplained == {}, "type these as models (or allow-list them with a reason)"


def test_every_allow_list_entry_still_names_an_offender() -> None:
    found = offenders(list(_modules()))
    assert sorted(set(ALLOWED) - set(found)) == [], "drop the entries typed since"


@pytest.mark.parametrize(("source", "caught"), [
    ("def f() -> dict[str, Any]: ...", True),
    ("def f() -> list[dict[str, Any]]: ...", True),
    ("def f() -> 'dict[str, object] | None': ...", True),
    ("Row = dict[str, Any]\nRows = list[Row]\ndef f() -> Rows: ...", True),
    ("def f() -> Any: ...", True),
    ("class C:\n    def rows(self) -> list[dict[str, Any]]: ...", True),
    ("from aismm.x import Row\ndef f() -> tuple[int, Row]: ...", True),
    ("def _private() -> dict[str, Any]: ...", False),
    ("class C:\n    def to_json(self) -> dict[str, Any]: ...", False),
    ("def f() -> dict[str, int]: ...", False),
    ("def f() -> Callable[[Any], None]: ...", False),
    ("def f() -> list[Row]: ...", False),  # a model named Row, not an alias of a dict
])
def test_the_guard_catches_what_it_should(source: str, caught: bool) -> None:
    other = ("aismm.x", ast.parse("Row = dict[str, Any]\n"))
    assert bool(offenders([("aismm.y", ast.parse(source)), other])) is caught


def test_no_assert_in_product_code() -> None:
    """``python -O`` strips asserts: product code states its checks as code."""
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Assert)]
    assert found == []


def test_the_cli_hub_accessor_returns_a_hub() -> None:
    tree = ast.parse((PACKAGE / "cli" / "common.py").read_text())
    accessor = next(n for n in tree.body if isinstance(n, ast.FunctionDef)
                    and n.name == "hub_from")
    assert accessor.returns is not None and ast.unparse(accessor.returns) == "Hub"
