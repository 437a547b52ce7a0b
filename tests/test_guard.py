"""Guard: product code starts a process only through the sandbox (or git, or inside the sandbox).

Read from the syntax tree of every module of the package, not from its text: an alias
(`import subprocess as sp`), a `from os import execv` or a call through an attribute is found the
same way. The allowed places are listed with the reason they are safe.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aismm"

# Names that start (or replace) a process.
MODULES = {"subprocess", "multiprocessing", "pty", "concurrent.futures.process"}
OS_CALLS = {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnl",
            "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
            "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe"}
ASYNCIO = {"create_subprocess_exec", "create_subprocess_shell"}

ALLOWED = {
    # the sandbox starts zygotes (one cold one per one-shot run; prlimit for rlimits-only); a
    # zygote forks each run's child, which enters the isolation (docs/sandbox.md)
    "aismm/infra/sandbox.py": "wrappers",
    "aismm/infra/zygote.py": "wrappers",
    # runs inside the sandbox only (refuses without AISMM_SANDBOX): the unit-test child
    "aismm/checks/testrun.py": "inside the sandbox",
    # the demo drives the real git binary, as a user would
    "aismm/demo.py": "git only",
    # the hub's own C compiler builds the native hook client from the package's source
    "aismm/state/provision.py": "compiler",
    # export, verify and import hand bundles, fsck and verify-commit to stock git
    "aismm/infra/bundle.py": "git only",
    # the HTTP face runs stock `git http-backend` (its argv is the git binary found on PATH)
    "aismm/web/git.py": "git http-backend",
}


def _starts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every import or call that can start a process."""
    found: list[tuple[int, str]] = []
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES or alias.name.split(".")[0] in MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
                if alias.name == "os" and alias.asname:
                    os_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module in MODULES or module.split(".")[0] in MODULES:
                found.append((node.lineno, f"from {module} import ..."))
            if module == "os":
                found += [(node.lineno, f"from os import {a.name}") for a in node.names
                          if a.name in OS_CALLS]
            if module == "asyncio":
                found += [(node.lineno, f"from asyncio import {a.name}") for a in node.names
                          if a.name in ASYNCIO]
        elif isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id in os_names and node.attr in OS_CALLS:
                found.append((node.lineno, f"os.{node.attr}"))
            if node.attr in ASYNCIO:
                found.append((node.lineno, node.attr))
    return found


def _git_only(tree: ast.AST) -> list[int]:
    """Lines of subprocess calls whose argv is not a literal list starting with "git"."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess":
            argv = node.args[0] if node.args else None
            if not (isinstance(argv, ast.List) and argv.elts and isinstance(argv.elts[0],
                                                                             ast.Constant)
                    and argv.elts[0].value == "git"):
                bad.append(node.lineno)
    return bad


def test_no_product_code_starts_a_process_outside_the_sandbox() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), rel)
        starts = _starts(tree)
        if starts and rel not in ALLOWED:
            offenders += [f"{rel}:{line}: {what}" for line, what in starts]
        if ALLOWED.get(rel) == "git only":
            offenders += [f"{rel}:{line}: a subprocess that is not git" for line in
                          _git_only(tree)]
    assert offenders == []


def test_the_guard_finds_every_way_of_starting_a_process() -> None:
    samples = {
        "import subprocess\nsubprocess.run(['x'])": 1,
        "import subprocess as sp\nsp.Popen(['x'])": 1,
        "from subprocess import run\nrun(['x'])": 1,
        "import os\nos.system('x')": 1,
        "import os as o\no.execv('x', [])": 1,
        "from os import fork\nfork()": 1,
        "import multiprocessing": 1,
        "import asyncio\nasyncio.create_subprocess_exec('x')": 1,
        "import os\nos.getpid()": 0,
    }
    for source, count in samples.items():
        assert len(_starts(ast.parse(source))) == count, source
    assert _git_only(ast.parse("import subprocess\nsubprocess.run(['git', 'log'])")) == []
    assert _git_only(ast.parse("import subprocess\nsubprocess.run([cmd, 'log'])")) == [2]


def test_the_unit_test_child_refuses_to_run_outside_the_sandbox(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("AISMM_SANDBOX", "PYTEST_CURRENT_TEST")}
    code = ("from pathlib import Path\nfrom aismm.checks import testrun\n"
            "print(testrun.run_suite(Path('t.py'), 'x = 1', Path('.')))")
    (tmp_path / "t.py").write_text("def test_x():\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0 or "sandbox" in done.stdout + done.stderr
    assert "AISMM_SANDBOX" in done.stdout + done.stderr


# -- the import graph: which modules import click and pygit2 ------------------------------------
def _module_of(path: Path) -> str:
    """``aismm/infra/git.py`` -> ``aismm.infra.git``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name ``tree`` imports, anywhere (inside functions too): ``import a.b`` and
    ``from a.b import c`` (relative ones resolved against ``module``) give ``a.b`` and, for the
    ``from`` form, ``a.b.c`` as well (``c`` may be a submodule); ``importlib.import_module("x")``
    and ``__import__("x")`` with a literal name give ``x``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else \
                func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.add(node.args[0].value)
    return {name for name in found if name}


@functools.cache
def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules it imports, for every module of the package (from the syntax
    tree; nothing is imported or run). Read once per session."""
    graph = {}
    for path in sorted(package.rglob("*.py")):
        module = _module_of(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
        graph[module] = _imported(tree, module, path.name == "__init__.py")
    return graph


def _importers(graph: dict[str, set[str]], top: str) -> dict[str, list[str]]:
    """Modules that import ``top`` (or a submodule of it), with the names they import."""
    return {module: sorted(n for n in names if n == top or n.startswith(f"{top}."))
            for module, names in graph.items()
            if any(n == top or n.startswith(f"{top}.") for n in names)}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_only_the_cli_imports_click() -> None:
    importers = _importers(import_graph(), "click")
    assert importers, "the graph found no click import at all: the guard is blind"
    assert {m: n for m, n in importers.items() if not _in(m, "aismm.cli")} == {}


def test_only_the_git_module_imports_pygit2() -> None:
    assert set(_importers(import_graph(), "pygit2")) == {"aismm.infra.git"}


def test_the_import_graph_sees_every_form_of_import() -> None:
    samples = {
        "import click": {"click"},
        "import click.testing as ct": {"click.testing"},
        "from click import echo": {"click", "click.echo"},
        "def f():\n    import pygit2\n": {"pygit2"},
        "import importlib\nimportlib.import_module('click')": {"importlib", "click"},
        "__import__('pygit2')": {"pygit2"},
        "from . import git": {"aismm.infra", "aismm.infra.git"},
        "from ..core import model": {"aismm.core", "aismm.core.model"},
        "x = 'import click'": set(),  # text is not an import
        "# import click\n": set(),
    }
    for source, expected in samples.items():
        assert _imported(ast.parse(source), "aismm.infra.sandbox", False) == expected, source
    assert _imported(ast.parse("from . import x"), "aismm.infra", True) == \
        {"aismm.infra", "aismm.infra.x"}
    assert _importers({"a": {"click.testing"}, "b": {"clicker"}}, "click") == \
        {"a": ["click.testing"]}
