"""Agent reputation recomputed from execution records: decayed quality, lower bound, stars,
trend.

Pure computation: callers load :class:`Execution` records and pass them in. The formulas are
written out in ``docs/reputation.md`` so that every figure can be recomputed by hand.

``quality`` is what the agent's work scored (a decayed mean, no prior mixed in); the lower
confidence bound ``quality_lcb`` is what ranking and ``stars`` use, so thin evidence ranks and
rates below thick evidence of the same quality. Every figure comes with the number of records
behind it (``executions``, ``delivered``, ``accepted``, ``decided``).
"""

from __future__ import annotations

__all__ = [
    "HALF_LIFE_DAYS",
    "JOB_EVIDENCE",
    "LCB_Z",
    "OUTCOMES",
    "PRIOR_QUALITY",
    "PRIOR_WEIGHT",
    "STAR_FLOOR",
    "STAR_STEP",
    "TREND_DAYS",
    "Execution",
    "Reputation",
    "compute",
    "jobs",
    "newcomer",
    "shown_quality",
    "stars_for",
]

import datetime as dt
import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate, compress
from operator import mul
from typing import Any

from aismm.core.errors import UsageError

OUTCOMES = frozenset({"accepted", "not_selected", "rejected", "failed", "refunded"})
PRIOR_QUALITY = 50.0
"""Neutral quality (0-100) the lower bound's prior is centred on."""
PRIOR_WEIGHT = 3.0
"""Pseudo-observations of weight 1 at :data:`PRIOR_QUALITY` in the lower bound's posterior."""
JOB_EVIDENCE = 4.0
"""Observations one graded job (of weight 1) contributes to the lower bound's posterior."""
LCB_Z = 1.645
"""Standard normal quantile of the one-sided 95 % lower confidence bound."""
STAR_FLOOR = 40.0
"""Lower bound (0-100) at or below which an agent has 0 stars."""
STAR_STEP = 10.0
"""Points of lower bound per star above :data:`STAR_FLOOR`: 5 stars at a bound of 90."""
HALF_LIFE_DAYS = 30.0
TREND_DAYS = 30.0

_DAY_SECONDS = 86400.0
_OUTCOME_CODE = {name: float(i) for i, name in enumerate(sorted(OUTCOMES))}
_ACCEPTED = _OUTCOME_CODE["accepted"]
_FAILED = _OUTCOME_CODE["failed"]
_NOT_SELECTED = _OUTCOME_CODE["not_selected"]
_FIELDS = 5
_MISSING = -1.0  # quality column value of a record that delivered nothing
_SECONDS = dt.timedelta.total_seconds
_TREND_SECONDS = TREND_DAYS * _DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Execution:
    """One attempt by an agent on a mission, as recorded by the hub."""

    id: str
    agent: str
    agent_owner: str
    client: str
    client_owner: str
    contract: str
    mission: str
    finished_at: dt.datetime
    latency_seconds: float
    quality: float | None
    outcome: str
    reworks: int
    cost: int

    def __post_init__(self) -> None:
        where = f"execution {self.id}"
        if self.outcome not in OUTCOMES:
            raise UsageError(
                f"{where}: outcome {self.outcome!r} is unknown; use one of {sorted(OUTCOMES)}"
            )
        if self.finished_at.tzinfo is None:
            raise UsageError(f"{where}: finished_at has no time zone; pass an aware UTC instant")
        if not (math.isfinite(self.latency_seconds) and self.latency_seconds >= 0):
            raise UsageError(
                f"{where}: latency_seconds {self.latency_seconds!r} is invalid; "
                "pass a finite number of seconds >= 0"
            )
        if self.quality is not None and not 0 <= self.quality <= 100:
            raise UsageError(
                f"{where}: quality {self.quality!r} is out of range; pass 0-100 or None"
            )
        if self.reworks < 0 or self.cost < 0:
            raise UsageError(f"{where}: reworks and cost must be >= 0; fix the record")

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Execution:
        """The execution a stored or exported record (its JSON fields) describes."""
        return cls(id=record["id"], agent=record["agent"], agent_owner=record["agent_owner"],
                   client=record["client"], client_owner=record["client_owner"],
                   contract=record["contract"], mission=record["mission"],
                   finished_at=dt.datetime.fromisoformat(
                       str(record["finished_at"]).replace("Z", "+00:00")),
                   latency_seconds=record["latency_seconds"], quality=record["quality"],
                   outcome=record["outcome"], reworks=record["reworks"], cost=record["cost"])


@dataclass(frozen=True, slots=True)
class Reputation:
    """An agent's reputation as of one instant, recomputable from its records.

    ``executions`` records stand behind ``quality``, ``quality_lcb``, ``stars``, ``rank`` and
    ``trend_30d``; ``delivered`` behind ``speed_p50``; ``accepted`` behind ``cost_per_accepted``;
    ``decided`` (every outcome but ``not_selected``) behind ``acceptance_rate``.
    """

    agent: str
    executions: int
    quality: float
    quality_lcb: float
    speed_p50: float | None
    cost_per_accepted: float | None
    acceptance_rate: float | None
    stars: float
    rank: float
    trend_30d: float | None
    delivered: int = 0
    accepted: int = 0
    decided: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, in declaration order."""
        return {
            "agent": self.agent,
            "executions": self.executions,
            "quality": self.quality,
            "quality_lcb": self.quality_lcb,
            "speed_p50": self.speed_p50,
            "cost_per_accepted": self.cost_per_accepted,
            "acceptance_rate": self.acceptance_rate,
            "stars": self.stars,
            "rank": self.rank,
            "trend_30d": self.trend_30d,
            "delivered": self.delivered,
            "accepted": self.accepted,
            "decided": self.decided,
        }


def _posterior(weighted_quality: float, weight: float) -> float:
    """The lower bound's posterior mean (0-100): the prior plus JOB_EVIDENCE per unit weight."""
    return (PRIOR_WEIGHT * PRIOR_QUALITY + JOB_EVIDENCE * weighted_quality) / (
        PRIOR_WEIGHT + JOB_EVIDENCE * weight)


def _lower_bound(weighted_quality: float, weight: float) -> float:
    """Lower confidence bound (0-100) given the decayed sums Σ w·q and Σ w of the records."""
    mean = _posterior(weighted_quality, weight)
    p = mean / 100.0
    n = PRIOR_WEIGHT + JOB_EVIDENCE * weight
    spread = LCB_Z * 100.0 * math.sqrt(p * (1.0 - p) / (n + 1.0))
    return max(0.0, mean - spread)


def stars_for(quality_lcb: float) -> float:
    """Stars (0.0-5.0, one decimal) of a lower bound: one per STAR_STEP points above STAR_FLOOR."""
    return round(min(5.0, max(0.0, (quality_lcb - STAR_FLOOR) / STAR_STEP)), 1)


def jobs(n: int) -> str:
    """``1 job``, ``3 jobs``: the confidence printed beside a figure."""
    return f"{n} job" if n == 1 else f"{n} jobs"


def shown_quality(quality: float | None, executions: int, assessed: float | None) -> str:
    """The quality a client is shown: the records' mean with their count, else the assessed
    quality marked as such (``97.7 (assessed)``), else ``-``."""
    if executions > 0 and quality is not None:
        return f"{quality:.1f} ({jobs(executions)})"
    if assessed is not None:
        return f"{assessed:.1f} (assessed)"
    return "-"


def _mean(values: Iterable[float], weights: list[float]) -> float:
    return math.fsum(map(mul, weights, values)) / math.fsum(weights)


def _weighted_median(values: list[float], weights: list[float]) -> float | None:
    """Lower weighted median: the smallest value whose cumulative weight reaches half the total."""
    if not values:
        return None
    weight_of = dict(zip(values, weights, strict=True))
    if len(weight_of) == len(values):
        ordered_values = sorted(values)
        ordered_weights = list(map(weight_of.__getitem__, ordered_values))
    else:  # ties: order by (value, weight) so the running sum never depends on input order
        pairs = sorted(zip(values, weights, strict=True))
        ordered_values = [v for v, _ in pairs]
        ordered_weights = [w for _, w in pairs]
    running = list(accumulate(ordered_weights))
    return float(ordered_values[bisect_left(running, running[-1] / 2.0)])


@dataclass(frozen=True, slots=True)
class _Partial:
    executions: int
    quality: float
    quality_lcb: float
    speed_p50: float | None
    cost_per_accepted: float | None
    acceptance_rate: float | None
    trend_30d: float | None
    delivered: int
    accepted: int
    decided: int


def _summarise(row: array[float], half_life_days: float) -> _Partial | None:
    """Reduce one agent's interleaved record fields to everything but its rank."""
    ages, latency, quality, cost, outcome = (row[i::_FIELDS] for i in range(_FIELDS))
    if min(ages) < 0.0:  # records after ``now`` do not exist yet
        keep = [age >= 0.0 for age in ages]
        ages, latency, quality, cost, outcome = (
            array("d", compress(column, keep)) for column in (ages, latency, quality, cost, outcome)
        )
        if not ages:
            return None
    scale = _DAY_SECONDS * half_life_days
    # Every figure but the bound is a ratio of decayed sums, so it is computed with weights
    # relative to the youngest record (w_i / w_min, which never underflow); the bound needs
    # the absolute total W = Σ w_i, which fades to 0 (the prior) as the records age.
    youngest = min(ages)
    relative = [0.5 ** ((age - youngest) / scale) for age in ages]
    weight = math.fsum(relative) * 0.5 ** (youngest / scale)
    delivered = [q >= 0.0 and o != _FAILED for q, o in zip(quality, outcome, strict=True)]
    scores = [q if d else 0.0 for q, d in zip(quality, delivered, strict=True)]
    mean = _mean(scores, relative)
    weighted = mean * weight  # Σ w_i·q_i

    # As of TREND_DAYS ago only the records already finished then existed.
    old = list(map(_TREND_SECONDS.__le__, ages))
    trend = None
    if any(old):
        trend = mean - _mean(compress(scores, old), list(compress(relative, old)))

    accepted = list(map(_ACCEPTED.__eq__, outcome))
    decided = [o != _NOT_SELECTED for o in outcome]  # a contest lost is no refusal
    accepted_weight = math.fsum(compress(relative, accepted))
    decided_weight = math.fsum(compress(relative, decided))
    spent = math.fsum(map(mul, relative, cost))
    return _Partial(
        executions=len(ages),
        quality=mean,
        quality_lcb=_lower_bound(weighted, weight),
        speed_p50=_weighted_median(
            list(compress(latency, delivered)), list(compress(relative, delivered))
        ),
        cost_per_accepted=spent / accepted_weight if accepted_weight > 0 else None,
        acceptance_rate=accepted_weight / decided_weight if decided_weight > 0 else None,
        trend_30d=trend,
        delivered=sum(delivered),
        accepted=sum(accepted),
        decided=sum(decided),
    )


def _ranks(bounds: dict[str, float]) -> dict[str, float]:
    """Mid-rank percentile (0-100) of each agent's lower bound among all of them."""
    ordered = sorted(bounds.values())
    others = len(ordered) - 1
    if others == 0:
        return {agent: 100.0 for agent in bounds}
    ranks = {}
    for agent, bound in bounds.items():
        below = bisect_left(ordered, bound)
        ties = bisect_right(ordered, bound) - below - 1
        ranks[agent] = 100.0 * (below + 0.5 * ties) / others
    return ranks


def _wanted(contract: str) -> Callable[[Execution], bool]:
    """A filter on records by contract: exact with ``@version``, any version without."""
    if "@" in contract:
        return lambda record: record.contract == contract
    prefix = contract + "@"
    return lambda record: record.contract == contract or record.contract.startswith(prefix)


def compute(
    records: Iterable[Execution],
    now: dt.datetime,
    *,
    contract: str | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
) -> dict[str, Reputation]:
    """Reputation of every agent with at least one counted record, keyed and ordered by agent."""
    if now.tzinfo is None:
        raise UsageError("reputation: now has no time zone; pass an aware UTC instant")
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise UsageError(
            f"reputation: half_life_days {half_life_days!r} is invalid; pass a positive number"
        )
    if contract is not None:
        records = filter(_wanted(contract), records)
    # The hot loop: one pass, each record's fields copied while it is in cache into one flat
    # array per agent (age, latency, quality or _MISSING, cost, outcome code), _FIELDS apart.
    groups: dict[str, array[float]] = {}
    seconds, code = _SECONDS, _OUTCOME_CODE
    for record in records:
        if record.client_owner == record.agent_owner:
            continue
        row = groups.get(record.agent)
        if row is None:
            row = groups[record.agent] = array("d")
        quality = record.quality
        row.extend(
            (
                seconds(now - record.finished_at),
                record.latency_seconds,
                _MISSING if quality is None else quality,
                record.cost,
                code[record.outcome],
            )
        )

    partials = {}
    for agent in sorted(groups):
        partial = _summarise(groups[agent], half_life_days)
        if partial is not None:
            partials[agent] = partial
    ranks = _ranks({agent: p.quality_lcb for agent, p in partials.items()})
    return {
        agent: Reputation(
            agent=agent,
            executions=p.executions,
            quality=p.quality,
            quality_lcb=p.quality_lcb,
            speed_p50=p.speed_p50,
            cost_per_accepted=p.cost_per_accepted,
            acceptance_rate=p.acceptance_rate,
            stars=stars_for(p.quality_lcb),
            rank=ranks[agent],
            trend_30d=p.trend_30d,
            delivered=p.delivered,
            accepted=p.accepted,
            decided=p.decided,
        )
        for agent, p in partials.items()
    }


def newcomer(agent: str) -> Reputation:
    """The prior of an agent with no counted records, for routing (unranked: rank 0).

    Its ``quality`` is the prior's centre, not a score anyone gave: a listing shows the
    assessed quality instead (``docs/reputation.md``).
    """
    bound = _lower_bound(0.0, 0.0)
    return Reputation(
        agent=agent,
        executions=0,
        quality=PRIOR_QUALITY,
        quality_lcb=bound,
        speed_p50=None,
        cost_per_accepted=None,
        acceptance_rate=None,
        stars=stars_for(bound),
        rank=0.0,
        trend_30d=None,
    )
