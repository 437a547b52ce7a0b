"""Run a contract's DoD against a local folder laid out like a checkout (benchmarks and tests).

Command checks run through :func:`aismm.infra.sandbox.run`, as the hub runs them: the check's timeout,
CPU and memory limits, a scrubbed environment and the sandbox's isolation. Checks run inside the
sandbox; they may start their own child processes, which stay inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aismm
from aismm.core.contract import Check, Contract, FileSpec, match_glob, validate_document
from aismm.core.model import load_yaml
from aismm.infra import sandbox

__all__ = [
    "CheckResult",
    "benchmark_checkout",
    "benchmark_tasks",
    "file_problems",
    "package_root",
    "platform_verdict",
    "run_dod",
    "schema_problems",
    "scrubbed_env",
]

Part = Literal["inputs", "deliverable"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one DoD check."""

    name: str
    status: Literal["pass", "fail"]
    detail: str


def package_root() -> Path:
    """The folder that holds the ``aismm`` package (for PYTHONPATH)."""
    return Path(aismm.__file__).resolve().parent.parent


def scrubbed_env(home: Path) -> dict[str, str]:
    """A minimal environment for a check or an agent: no inherited secrets."""
    return {
        "PATH": os.defpath,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(package_root()),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _specs(contract: Contract, part: Part) -> list[FileSpec]:
    return contract.inputs.files if part == "inputs" else contract.deliverable.files


def _present(root: Path, part: Part) -> list[str]:
    folder = root / part
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file())


def file_problems(contract: Contract, root: Path, part: Part = "deliverable") -> list[str]:
    """Required files present, nothing outside the allowed globs, sizes within the limits."""
    present = _present(root, part)
    problems = []
    for spec in _specs(contract, part):
        if spec.required and not any(match_glob(p, spec.path) for p in present):
            problems.append(f"{spec.path}: required but missing; add it")
    if part == "deliverable":
        allowed = contract.deliverable.allowed
        for path in present:
            if not any(match_glob(path, pattern) for pattern in allowed):
                problems.append(f"{path}: not allowed by the contract ({', '.join(allowed)});"
                                " remove it")
    limits = contract.inputs.limits if part == "inputs" else contract.deliverable.limits
    sizes = {path: (root / path).stat().st_size for path in present}
    for path, size in sizes.items():
        if size > limits.max_file_bytes:
            problems.append(f"{path}: {size} bytes exceeds {limits.max_file_bytes}; shrink it")
    if len(present) > limits.max_files:
        problems.append(f"{part}/: {len(present)} files exceeds {limits.max_files}; deliver fewer")
    if sum(sizes.values()) > limits.max_total_bytes:
        problems.append(f"{part}/: {sum(sizes.values())} bytes in total exceeds"
                        f" {limits.max_total_bytes}; shrink it")
    return problems


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return load_yaml(text, str(path))
    return json.loads(text)


def schema_problems(contract: Contract, root: Path, part: Part = "deliverable") -> list[str]:
    """Every present file with a schema parses and validates (schemas read from ``root``)."""
    present = _present(root, part)
    problems = []
    for spec in _specs(contract, part):
        if not spec.schema_:
            continue
        schema_text = (root / spec.schema_).read_bytes()
        for path in (p for p in present if match_glob(p, spec.path)):
            try:
                data = _parse(root / path)
            except (ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{path}: cannot be parsed ({str(exc).splitlines()[0]});"
                                " write valid JSON")
                continue
            problems.extend(validate_document(schema_text, data, path))
    return problems


def _command(check: Check, root: Path, python: str) -> CheckResult:
    argv = [token.replace("{python}", python) for token in check.run or []]
    limits = sandbox.Limits(timeout_seconds=check.timeout_seconds,
                            cpu_seconds=int(check.timeout_seconds) + 1,
                            memory_bytes=check.memory_mb << 20)
    done = sandbox.run(argv, root, limits=limits, env={"PYTHONPATH": str(package_root())})
    if done.timed_out:
        return CheckResult(check.name, "fail", f"timed out after {check.timeout_seconds:g}s")
    lines = done.stdout.strip().splitlines()
    if done.ok:
        return CheckResult(check.name, "pass", "\n".join(lines[:20]) or "ok")
    if not lines:
        lines = (done.stderr.strip().splitlines() or ["(no output)"])[-3:]
    why = f"killed ({done.killed})" if done.killed else f"exit {done.returncode}"
    return CheckResult(check.name, "fail", f"{why}: " + "\n".join(lines[:20]))


def run_dod(contract: Contract, root: Path, *, python: str = sys.executable) -> list[CheckResult]:
    """Run every DoD check of ``contract`` against the checkout at ``root``, in order."""
    results = []
    for check in contract.dod.checks:
        if check.kind == "command":
            results.append(_command(check, root, python))
            continue
        problems = (file_problems(contract, root) if check.kind == "files"
                    else schema_problems(contract, root))
        results.append(CheckResult(check.name, "fail" if problems else "pass",
                                   "\n".join(problems[:20]) or "ok"))
    return results


def platform_verdict(results: list[CheckResult]) -> dict[str, Any]:
    """The ``verdict`` and ``checks`` fields of a ``verdicts/platform.yaml`` for these results."""
    return {
        "verdict": "pass" if all(r.status == "pass" for r in results) else "fail",
        "checks": [{"name": r.name, "status": r.status, "detail": r.detail} for r in results],
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
