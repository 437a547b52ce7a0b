"""The definition of done: the contract's automatic checks, run against one attempt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from aismm.core.contract import match_glob, validate_document
from aismm.core.document import CheckResult
from aismm.core.model import load_yaml
from aismm.infra import sandbox

if TYPE_CHECKING:
    from aismm.gate import MissionPolicy
    from aismm.infra.hub import Hub

__all__ = ["run_checks", "score", "python_env"]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for sandboxed Python: the aismm package importable, nothing else leaked."""
    import aismm

    return {"PYTHONPATH": str(Path(aismm.__file__).resolve().parent.parent), **(extra or {})}


def run_checks(hub: "Hub", policy: "MissionPolicy", checkout: Path) -> list[CheckResult]:
    """Run every DoD check of the mission's contract against a checkout of the attempt."""
    contract = policy.contract
    files = sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*")
                   if p.is_file())
    deliverable = [p for p in files if p.startswith("deliverable/")]
    out = []
    for check in contract.dod.checks:
        if check.kind == "files":
            problems = []
            for spec in contract.deliverable.files:
                if spec.required and not any(match_glob(p, spec.path) for p in deliverable):
                    problems.append(f"{spec.path} missing")
            for path in deliverable:
                if not any(match_glob(path, g) for g in contract.deliverable.allowed):
                    problems.append(f"{path} not allowed")
            out.append(CheckResult(name=check.name, status="fail" if problems else "pass",
                                   detail="; ".join(problems) or f"{len(deliverable)} files"))
        elif check.kind == "schema":
            problems = []
            for spec in contract.deliverable.files:
                if not spec.schema_:
                    continue
                for path in (p for p in deliverable if match_glob(p, spec.path)):
                    raw = (checkout / path).read_bytes()
                    try:
                        data = json.loads(raw) if path.endswith(".json") else load_yaml(raw, path)
                    except ValueError as exc:
                        problems.append(f"{path}: unparseable ({str(exc)[:80]})")
                        continue
                    problems += validate_document(policy.schemas[spec.schema_], data, path)[:3]
            out.append(CheckResult(name=check.name, status="fail" if problems else "pass",
                                   detail="; ".join(problems)[:2000] or "all files validate"))
        else:
            argv = [sandbox.PYTHON if a == "{python}" else a for a in check.run or []]
            limits = sandbox.Limits(timeout_seconds=check.timeout_seconds,
                                    cpu_seconds=int(check.timeout_seconds) + 1,
                                    memory_bytes=check.memory_mb << 20)
            result = sandbox.run(argv, checkout, limits=limits, env=python_env(),
                                 hidden_paths=[hub.root])
            tail = (result.stdout + result.stderr).strip()[-1500:]
            if result.timed_out:
                detail = f"timed out after {check.timeout_seconds}s"
            elif result.killed:
                detail = f"killed ({result.killed}); {tail}"
            else:
                detail = tail or f"exit {result.returncode}"
            out.append(CheckResult(name=check.name, status="pass" if result.ok else "fail",
                                   detail=detail[:2000]))
    return out


def score(checks: list[CheckResult]) -> int:
    """Percentage of checks that passed."""
    return round(100 * sum(c.status == "pass" for c in checks) / len(checks)) if checks else 0
