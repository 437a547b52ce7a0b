"""Workflow check: the assembled report says what the hub's records say.

Run in a checkout of a workflow mission's orchestrator attempt: ``python -m
aismm.checks.workflow``. Every step must be done (accepted, or given up), and each entry of
``deliverable/report.json`` must name the step's contract, its accepted child, that child's
agent, acceptance commit and file digests exactly as the platform's record
``orchestration/NNN.yaml`` holds them; a given-up step must say so. Prints one line per
problem; exit 0 = pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aismm.checks import report
from aismm.core.contract import parse_contract
from aismm.core.model import load_yaml
from aismm.core.plan import DECISION_NAME, OUTCOME_NAME, Decision, Outcome, view

__all__ = ["check", "main"]

REPORT = "deliverable/report.json"


def _records(root: Path) -> tuple[dict[int, Decision], dict[int, Outcome]]:
    decisions: dict[int, Decision] = {}
    outcomes: dict[int, Outcome] = {}
    for path in sorted(root.glob("*/*.yaml")):
        rel = path.relative_to(root).as_posix()
        if (m := DECISION_NAME.match(rel)) is not None:
            decisions[int(m.group(1))] = Decision.model_validate(load_yaml(path.read_bytes(), rel))
        elif (m := OUTCOME_NAME.match(rel)) is not None:
            outcomes[int(m.group(1))] = Outcome.model_validate(load_yaml(path.read_bytes(), rel))
    return decisions, outcomes


def check(root: Path) -> list[str]:
    """Problems with the assembled report against the plan's records."""
    contract = parse_contract((root / "contract.yaml").read_bytes(), "contract.yaml")
    mission = load_yaml((root / "mission.yaml").read_bytes(), "mission.yaml")
    price = int(mission.get("price", 0)) if isinstance(mission, dict) else 0
    try:
        decisions, outcomes = _records(root)
    except ValueError as exc:
        return [f"plan: unreadable record ({str(exc).splitlines()[0]}); only the hub and the "
                "orchestrator write these"]
    plan = view(contract, price, decisions, outcomes)
    try:
        data = json.loads((root / REPORT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{REPORT}: missing; assemble the report once every step is done"]
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{REPORT}: not valid JSON ({exc}); write a JSON object"]
    steps: Any = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, dict):
        return [f"{REPORT}: expected an object with a 'steps' object; see the schema"]
    problems = [f"{REPORT}: steps: {sid} is not a step of {contract.ref}; drop it"
                for sid in sorted(set(steps) - set(plan.steps))]
    for sid, sv in plan.steps.items():
        entry = steps.get(sid)
        where = f"{REPORT}: steps/{sid}"
        if not sv.done:
            problems.append(f"{where}: the step is not done (no accepted child, not given up); "
                            "assemble once every step is done")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: missing; report every step")
            continue
        want = sv.report_entry()
        for key, value in want.items():
            if entry.get(key) != value:
                problems.append(f"{where}: {key} is {entry.get(key)!r} but the records say "
                                f"{value!r}; copy it from orchestration/")
    return problems


def main() -> int:
    """Entry point: check the checkout in the current directory."""
    return report(check(Path.cwd()))


if __name__ == "__main__":
    sys.exit(main())
