"""Benchmark checkouts for tests, judged by the hub's own DoD (:func:`aismm.services.dod.run`).

A checkout is laid out like an attempt on a mission's main: ``contract.yaml``, ``schemas/``,
``inputs/`` (and the golden deliverable when asked), so the DoD reads the schemas the checkout
carries, as the hub reads the ones frozen on main.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import aismm
from aismm.core.contract import Contract
from aismm.core.document import CheckResult
from aismm.services import dod

__all__ = ["benchmark_checkout", "benchmark_tasks", "platform_verdict", "run_dod",
           "schemas_of", "scrubbed_env"]


def scrubbed_env(home: Path) -> dict[str, str]:
    """A minimal environment for a check or an agent run outside the sandbox: no secrets."""
    return {
        "PATH": os.defpath,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(aismm.__file__).resolve().parent.parent),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def benchmark_tasks(contract_dir: Path) -> list[Path]:
    """The task folders of a contract's benchmark suite, sorted by name."""
    folder = contract_dir / "benchmark"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def benchmark_checkout(contract_dir: Path, task_dir: Path, dest: Path, *,
                       golden: bool = False) -> Path:
    """Lay out ``dest`` like an attempt checkout: contract.yaml, schemas/, inputs/ (+ golden)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(contract_dir / "contract.yaml", dest / "contract.yaml")
    shutil.copytree(contract_dir / "schemas", dest / "schemas", dirs_exist_ok=True)
    shutil.copytree(task_dir / "inputs", dest / "inputs", dirs_exist_ok=True)
    if golden:
        shutil.copytree(task_dir / "golden", dest / "deliverable", dirs_exist_ok=True)
    return dest


def schemas_of(contract: Contract, root: Path) -> dict[str, bytes]:
    """The contract's schemas as the checkout at ``root`` carries them."""
    return {path: (root / path).read_bytes() for path in contract.schema_paths()}


def run_dod(contract: Contract, root: Path) -> list[CheckResult]:
    """The hub's DoD on the checkout at ``root``, with the schemas it carries."""
    return dod.run(contract, schemas_of(contract, root), root)


def platform_verdict(results: list[CheckResult]) -> dict[str, Any]:
    """The ``verdict`` and ``checks`` fields of a ``verdicts/platform.yaml`` for these results."""
    return {
        "verdict": "pass" if all(r.status == "pass" for r in results) else "fail",
        "checks": [r.model_dump() for r in results],
    }
