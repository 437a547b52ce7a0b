"""The definition of done: a contract's automatic checks, run against a checkout of an attempt.

:func:`run` needs no hub (tests and benchmarks run the hub's own DoD with it);
:func:`run_checks` is the hub's call, on a mission's frozen contract and schemas. The ``files``
and ``schema`` checks apply :mod:`aismm.core.files`, the rules the gate applies on every push;
``command`` checks run in the sandbox with the check's limits.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aismm
from aismm.core.contract import Check, Contract
from aismm.core.document import CheckResult
from aismm.core.files import document_problems, layout_problems, schema_targets
from aismm.infra import sandbox

if TYPE_CHECKING:
    from aismm.infra.hub import Hub
    from aismm.state.policy import MissionPolicy

__all__ = ["python_env", "run", "run_checks", "score"]

DETAIL = 2000  # characters of a check's detail kept in the platform verdict
SCHEMA_ERRORS = 3  # schema errors reported per file


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for sandboxed Python: the aismm package importable, nothing else leaked."""
    return {"PYTHONPATH": str(Path(aismm.__file__).resolve().parent.parent), **(extra or {})}


def run_checks(hub: Hub, policy: MissionPolicy, checkout: Path) -> list[CheckResult]:
    """Run every DoD check of the mission's contract against a checkout of the attempt."""
    return run(policy.contract, policy.schemas, checkout, hidden=(hub.root,))


def run(contract: Contract, schemas: Mapping[str, bytes], checkout: Path,
        hidden: Sequence[Path] = ()) -> list[CheckResult]:
    """Run every DoD check of ``contract`` against ``checkout``, in the contract's order.

    ``schemas`` maps the contract's schema paths to their text; ``hidden`` paths (the hub) are
    kept out of view of the command checks.
    """
    out = []
    for check in contract.dod.checks:
        if check.kind == "files":
            sizes = {path: size or 0 for path, (_file, size) in _listing(checkout).items()}
            problems = layout_problems(contract, "deliverable", sizes)
            count = sum(p.startswith("deliverable/") for p in sizes)
            out.append(_result(check, [str(p) for p in problems], f"{count} files"))
        elif check.kind == "schema":
            problems = document_problems(contract, "deliverable", _documents(contract, checkout),
                                         schemas, per_file=SCHEMA_ERRORS)
            out.append(_result(check, [str(p) for p in problems], "all files validate"))
        else:
            out.append(_command(check, checkout, hidden))
    return out


def score(checks: list[CheckResult]) -> int:
    """Percentage of checks that passed."""
    return round(100 * sum(c.status == "pass" for c in checks) / len(checks)) if checks else 0


def _result(check: Check, problems: list[str], ok: str) -> CheckResult:
    return CheckResult(name=check.name, status="fail" if problems else "pass",
                       detail="\n".join(problems)[:DETAIL] or ok)


def _listing(root: Path) -> dict[str, tuple[Path, int | None]]:
    """Every file and link under ``root`` (links are listed, never followed), with its size
    (None for anything but a regular file)."""
    out: dict[str, tuple[Path, int | None]] = {}
    for folder, dirs, names in os.walk(root):
        base = Path(folder)
        for name in [*names, *(d for d in dirs if (base / d).is_symlink())]:
            path = base / name
            info = path.lstat()
            out[path.relative_to(root).as_posix()] = (
                path, info.st_size if stat.S_ISREG(info.st_mode) else None)
    return out


def _documents(contract: Contract, root: Path) -> dict[str, bytes | None]:
    """The content of each deliverable file a schema covers (None: not a regular file). A file
    over the per-file limit is not read: it fails the files check."""
    listing = _listing(root)
    cap = contract.deliverable.limits.max_file_bytes
    out: dict[str, bytes | None] = {}
    for path, _schema in schema_targets(contract, "deliverable", listing):
        file, size = listing[path]
        if size is None:
            out[path] = None
        elif size <= cap:
            out[path] = file.read_bytes()
    return out


def _command(check: Check, checkout: Path, hidden: Sequence[Path]) -> CheckResult:
    argv = [sandbox.PYTHON if a == "{python}" else a for a in check.run or []]
    limits = sandbox.Limits(timeout_seconds=check.timeout_seconds,
                            cpu_seconds=int(check.timeout_seconds) + 1,
                            memory_bytes=check.memory_mb << 20)
    result = sandbox.run(argv, checkout, limits=limits, env=python_env(),
                         hidden_paths=hidden)
    tail = (result.stdout + result.stderr).strip()[-1500:]
    if result.timed_out:
        detail = f"timed out after {check.timeout_seconds}s"
    elif result.killed:
        detail = f"killed ({result.killed}); {tail}"
    else:
        detail = tail or f"exit {result.returncode}"
    return CheckResult(name=check.name, status="pass" if result.ok else "fail",
                       detail=detail[:DETAIL])
