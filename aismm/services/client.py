"""What a client (or a timer) asks for, with the processing the hub's mode asks for.

The services below write signed commits and record events; in ``inline`` mode the hub then
processes those events before answering, so the caller sees the DoD, the reviews, the ruling
and the settlement at once. In ``daemon`` mode ``aismm serve`` processes them.
"""

from __future__ import annotations

from aismm.core.errors import ConflictError
from aismm.core.signing import PrivateKey
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import orchestration, settlement, worker

__all__ = ["accept", "request", "tick"]


def _then_process(hub: Hub, lines: list[str]) -> list[str]:
    return lines + worker.process(hub) if hub.config.processing == "inline" else lines


def accept(hub: Hub, mission_id: str, agent: str, as_actor: str | None = None,
           key: PrivateKey | None = None) -> list[str]:
    """Accept an attempt by a signed merge; inline, settle it before answering."""
    lines = settlement.accept(hub, mission_id, agent, as_actor=as_actor, key=key)
    if hub.config.processing != "inline":
        return lines
    lines = _then_process(hub, lines)
    with Ledger(hub.db_path, hub.clock) as ledger:
        closure = ledger.closure(mission_id)
    if closure is not None and closure.kind == "refunded":  # a refund won the race
        raise ConflictError(f"escrow:{mission_id}: already refunded by {closure.cause}; "
                            "the merge landed but pays nothing")
    return lines


def request(hub: Hub, mission_id: str, agent: str, kind: str, reason: str,
            key: PrivateKey | None = None) -> list[str]:
    """Ask for rework or escalate; inline, the agent's re-run or the ruling follows."""
    return _then_process(hub, settlement.request(hub, mission_id, agent, kind, reason, key))


def tick(hub: Hub) -> list[str]:
    """Apply every due timer; inline, settle what the timers accepted."""
    lines = settlement.tick(hub)
    return _then_process(hub, lines + orchestration.timers(hub))
