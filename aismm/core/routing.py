"""Pick agents for a mission by a documented score over reputation, price and load.

The score and the exclusion rules are written out in ``docs/reputation.md``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_WEIGHTS", "Candidate", "Ranked", "Weights", "exclusions", "rank"]

import math
from dataclasses import dataclass
from typing import Any

from aismm.core.errors import UsageError
from aismm.core.reputation import Reputation, newcomer


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent offered for a mission, with its listed price and current load."""

    agent: str
    owner: str
    price: int
    capacity: int
    open_attempts: int
    listed: bool

    def __post_init__(self) -> None:
        if self.price < 0 or self.capacity < 0 or self.open_attempts < 0:
            raise UsageError(
                f"candidate {self.agent}: price, capacity and open_attempts must be >= 0; "
                "fix the manifest or the attempt count"
            )


@dataclass(frozen=True, slots=True)
class Weights:
    """Relative weights of the three score components; only their ratios matter."""

    reputation: float = 0.6
    price: float = 0.25
    load: float = 0.15

    def __post_init__(self) -> None:
        values = (self.reputation, self.price, self.load)
        if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise UsageError(
                f"routing weights {values}: invalid; use finite weights >= 0 with a positive sum"
            )


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class Ranked:
    """One eligible candidate's score and every input that produced it."""

    agent: str
    score: float
    reputation: float
    price_score: float
    load_score: float
    inputs: dict[str, Any]


def exclusions(candidates: list[Candidate], *, client_owner: str | None = None) -> dict[str, str]:
    """Why each ineligible candidate is left out of :func:`rank`, keyed and ordered by agent."""
    reasons = {}
    for c in sorted(candidates, key=lambda c: c.agent):
        if client_owner is not None and c.owner == client_owner:
            reasons[c.agent] = "owned by the client"
        elif not c.listed:
            reasons[c.agent] = "not listed"
        elif c.open_attempts >= c.capacity:
            reasons[c.agent] = f"at capacity ({c.open_attempts}/{c.capacity} open attempts)"
    return reasons


def rank(
    candidates: list[Candidate],
    reputations: dict[str, Reputation],
    *,
    client_owner: str | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[Ranked]:
    """Eligible candidates, best first; ties broken by agent id."""
    seen: set[str] = set()
    for c in candidates:
        if c.agent in seen:
            raise UsageError(f"routing: agent {c.agent} is offered twice; pass each agent once")
        seen.add(c.agent)
    excluded = exclusions(candidates, client_owner=client_owner)
    eligible = [c for c in candidates if c.agent not in excluded]
    if not eligible:
        return []
    low = min(c.price for c in eligible)
    high = max(c.price for c in eligible)
    total = weights.reputation + weights.price + weights.load
    ranked = []
    for c in eligible:
        known = reputations.get(c.agent)
        rep = newcomer(c.agent) if known is None else known
        reputation = rep.quality_lcb
        price_score = 1.0 if high == low else (high - c.price) / (high - low)
        load_score = 1.0 - c.open_attempts / c.capacity
        score = (
            100.0
            * (
                weights.reputation * reputation / 100.0
                + weights.price * price_score
                + weights.load * load_score
            )
            / total
        )
        inputs = {
            "agent": c.agent,
            "owner": c.owner,
            "client_owner": client_owner,
            "price": c.price,
            "price_min": low,
            "price_max": high,
            "capacity": c.capacity,
            "open_attempts": c.open_attempts,
            "quality_lcb": reputation,
            "executions": rep.executions,
            "newcomer": known is None,
            "weights": {
                "reputation": weights.reputation,
                "price": weights.price,
                "load": weights.load,
            },
        }
        ranked.append(Ranked(c.agent, score, reputation, price_score, load_score, inputs))
    ranked.sort(key=lambda r: (-r.score, r.agent))
    return ranked
