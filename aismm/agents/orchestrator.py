"""ref-orchestrator: runs any workflow contract, deterministically, one decision per run.

It reads its attempt's checkout (the frozen ``contract.yaml``, ``mission.yaml``, the decisions
under ``plan/`` and the hub's records under ``orchestration/``) and writes at most one thing:
the next decision ``plan/NNN-<kind>.yaml`` or, once every step is done, the assembled
``deliverable/report.json``. Its policy, in step order (docs/protocol.md, "Workflows"):

- a ready step that was never opened: open it with the best-ranked candidate whose ask (plus
  the child fee) fits the step's share, its max price and the budget left;
- a child whose review failed: rework it once; a child that failed otherwise (its DoD, its
  run) or again: fall back to the next-ranked candidate not tried yet while attempts remain
  and fallback is allowed; else give the step up;
- a child refunded (its timeout ran out, or it could not be opened): fall back, else give up;
- a step whose needs failed for good: give it up;
- nothing else to decide while children work: write nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from aismm.agents.runtime import write_json
from aismm.core.contract import parse_contract, step_order
from aismm.core.document import MissionDoc
from aismm.core.errors import AismmError
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.plan import (
    DECISION_NAME,
    OUTCOME_NAME,
    RESULTS,
    ROUTING,
    Decision,
    Figure,
    Outcome,
    Routing,
    View,
    child_fee,
    view,
)

__all__ = ["decide", "main", "read_checkout", "report"]


def read_checkout(root: Path) -> tuple[MissionDoc, View, Routing | None]:
    """The mission, the plan bookkeeping and the routing table a checkout holds."""
    contract = parse_contract((root / "contract.yaml").read_bytes(), "contract.yaml")
    doc = MissionDoc.model_validate(load_yaml((root / "mission.yaml").read_bytes(),
                                              "mission.yaml"))
    decisions = {n: Decision.model_validate(data) for n, data in _documents(root, DECISION_NAME)}
    outcomes = {n: Outcome.model_validate(data) for n, data in _documents(root, OUTCOME_NAME)}
    routing_path = root / ROUTING
    routing = Routing.model_validate(load_yaml(routing_path.read_bytes(), ROUTING)) \
        if routing_path.is_file() else None
    return doc, view(contract, doc.price, decisions, outcomes), routing


def _documents(root: Path, pattern: re.Pattern[str]) -> list[tuple[int, Any]]:
    """The numbered YAML documents whose path matches ``pattern`` (plan/ or orchestration/)."""
    out = []
    for path in sorted(root.glob("*/*.yaml")):
        rel = path.relative_to(root).as_posix()
        if (m := pattern.match(rel)) is not None:
            out.append((int(m.group(1)), load_yaml(path.read_bytes(), rel)))
    return out


def decide(doc: MissionDoc, plan: View, routing: Routing) -> Decision | None:
    """The next decision, or None when there is nothing to decide now."""
    if plan.pending or plan.failed or plan.complete:
        return None
    number = plan.next_number

    def make(kind: str, step: str, **extra: Any) -> Decision:
        return Decision(mission=doc.id, number=number, kind=kind, step=step, **extra)

    for sid in step_order(plan.contract.steps):
        sv = plan.steps[sid]
        if sv.done:
            continue
        if plan.blocked(sid):
            return make("give_up", sid, reason="a step it needs failed")
        if sv.live is not None and sv.live.state == "open":
            continue
        if not plan.ready(sid):
            continue
        attempts_left = sv.attempts < sv.step.retry.max_attempts
        if sv.live is not None and sv.live.state == "failed":
            reworked = any(d.kind == "rework" and d.child == sv.live.child
                           for d in plan.decisions.values())
            if attempts_left and not reworked and sv.live.note == "review failed":
                return make("rework", sid, child=sv.live.child,
                            reason="the review failed; fix what the verdicts name")
        if sv.attempts and not (attempts_left and sv.step.retry.fallback):
            return make("give_up", sid, reason=f"no attempt left ({sv.attempts} of "
                        f"{sv.step.retry.max_attempts}) or no fallback allowed")
        pick = _candidate(doc, plan, routing, sid)
        if pick is None:
            return make("give_up", sid, reason="no ranked candidate fits the budget")
        figures = [Figure(agent=c.agent, score=c.score, price=c.price)
                   for c in routing.steps[sid].candidates]
        return make("fallback" if sv.attempts else "open", sid, agent=pick[0], price=pick[1],
                    routing=figures)
    return None


def _candidate(doc: MissionDoc, plan: View, routing: Routing, sid: str
               ) -> tuple[str, int] | None:
    """The best-ranked untried candidate whose ask fits (price, share, budget left)."""
    sv = plan.steps[sid]
    offer = routing.steps.get(sid)
    if offer is None:
        return None
    refund = 0
    if sv.live is not None and sv.live.state == "failed":
        refund = sv.live.cost - (0 if doc.tier == "T2" else sv.live.fee)
    room = min(plan.share(sid) - sv.cost, plan.left) + refund
    for c in offer.candidates:
        total = c.price + child_fee(c.price, offer.fee_bp)
        if c.agent not in sv.agents and c.price <= sv.step.max_price and total <= room:
            return c.agent, c.price
    return None


def report(root: Path, plan: View) -> dict[str, Any]:
    """The assembled deliverable: one entry per step, pinned by commit and sha256."""
    steps: dict[str, Any] = {}
    tests = findings = 0
    for sid in step_order(plan.contract.steps):
        sv = plan.steps[sid]
        rec = sv.accepted
        entry = sv.report_entry()
        if rec is not None:
            results = root / f"{RESULTS}{rec.decision:03d}" / "deliverable"
            summary = _summary(results)
            tests += summary.get("tests", 0)
            findings += summary.get("findings", 0)
            entry["summary"] = summary
        steps[sid] = entry
    module = next((f.path.removeprefix("inputs/") for f in plan.contract.inputs.files
                   if f.path.endswith(".py")), "inputs")
    accepted = sum(1 for e in steps.values() if e["state"] == "accepted")
    return {"schema_version": 1, "module": module, "steps": steps,
            "summary": {"tests": tests, "findings": findings, "steps_accepted": accepted,
                        "steps_given_up": len(steps) - accepted}}


def _summary(results: Path) -> dict[str, int]:
    """Counts read from a child's accepted deliverable (tests written, findings reported)."""
    out: dict[str, int] = {}
    for name, key, field in (("report.json", "tests", "tests"),
                             ("findings.json", "findings", "findings")):
        try:
            data = json.loads((results / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        value = data.get(field) if isinstance(data, dict) else None
        if isinstance(value, list):
            out[key] = len(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = max(value, 0)
    return out


def serve(root: Path) -> str:
    """One run: write the next decision or the report; what was written ('' for nothing)."""
    doc, plan, routing = read_checkout(root)
    if routing is None or (root / "deliverable").exists():
        return ""
    if plan.complete and not plan.failed and not plan.pending:
        write_json(root / "deliverable" / "report.json", report(root, plan))
        return "deliverable/report.json"
    decision = decide(doc, plan, routing)
    if decision is None:
        return ""
    path = f"plan/{decision.number:03d}-{decision.kind}.yaml"
    (root / "plan").mkdir(exist_ok=True)
    (root / path).write_text(dump_yaml(decision.model_dump(mode="json", exclude_none=True)),
                             encoding="utf-8")
    return path


def main() -> int:
    """Entry point for ``python -m aismm.agents.orchestrator``."""
    sys.dont_write_bytecode = True
    try:
        written = serve(Path.cwd())
    except (AismmError, ValueError, OSError) as exc:
        print(f"aismm: orchestrator: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if written and os.environ.get("AISMM_VERBOSE"):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
