"""Reputation: exact figures for hand-checkable cases, and properties over generated records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aismm.core import reputation
from aismm.core.errors import UsageError
from aismm.core.reputation import Execution, Reputation, compute, newcomer

NOW = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rec(
    agent: str = "agent.a",
    *,
    quality: float | None = 80.0,
    age: dt.timedelta = dt.timedelta(0),
    outcome: str = "accepted",
    latency: float = 600.0,
    cost: int = 100,
    owner: str | None = None,
    client_owner: str = "actor.client",
    contract: str = "contract.code_review@1.0.0",
    n: int = 0,
) -> Execution:
    """One record; the agent's owner defaults to ``actor.owner-<agent>``."""
    return Execution(
        id=f"exec.{agent}.{n}.{age.total_seconds()}",
        agent=agent,
        agent_owner=owner or f"actor.owner-{agent}",
        client="actor.client",
        client_owner=client_owner,
        contract=contract,
        mission=f"mission.m{n}",
        finished_at=NOW - age,
        latency_seconds=latency,
        quality=quality,
        outcome=outcome,
        reworks=0,
        cost=cost,
    )


def lcb(weighted: float, weight: float) -> float:
    """The documented lower bound of Σ w·q and Σ w, written out independently of the module:
    a prior of 3 observations at 50, each unit of weight 4 observations, z = 1.645."""
    mean = (3 * 50 + 4 * weighted) / (3 + 4 * weight)
    p = mean / 100
    return max(0.0, mean - 1.645 * 100 * math.sqrt(p * (1 - p) / (3 + 4 * weight + 1)))


def stars(bound: float) -> float:
    """The documented stars: one per 10 points of bound above 40, 0 to 5."""
    return round(min(5.0, max(0.0, (bound - 40) / 10)), 1)


# --- exact figures -------------------------------------------------------------------------


def test_single_fresh_record_exact_figures() -> None:
    rep = compute([rec(quality=80.0, latency=600.0, cost=100)], NOW)["agent.a"]
    assert rep == Reputation(
        agent="agent.a",
        executions=1,
        quality=80.0,  # what the work scored: no prior mixed in
        quality_lcb=lcb(80.0, 1.0),
        speed_p50=600.0,
        cost_per_accepted=100.0,
        acceptance_rate=1.0,
        stars=stars(lcb(80.0, 1.0)),
        rank=100.0,
        trend_30d=None,  # nothing existed 30 days ago: no trend
        delivered=1,
        accepted=1,
        decided=1,
    )
    assert rep.stars == 0.0  # one job of 80 is thin evidence: its bound is below 40


def test_decay_halves_weight_every_half_life() -> None:
    reps = compute(
        [
            rec("agent.a", quality=100.0, age=30 * DAY),
            rec("agent.b", quality=100.0, age=60 * DAY),
            rec("agent.c", quality=100.0, age=15 * DAY),
        ],
        NOW,
    )
    assert {agent: r.quality for agent, r in reps.items()} == {
        "agent.a": 100.0, "agent.b": 100.0, "agent.c": 100.0}  # age fades weight, not scores
    assert reps["agent.a"].quality_lcb == pytest.approx(lcb(0.5 * 100, 0.5), abs=1e-12)
    assert reps["agent.b"].quality_lcb == pytest.approx(lcb(0.25 * 100, 0.25), abs=1e-12)
    weight = 0.5**0.5
    assert reps["agent.c"].quality_lcb == pytest.approx(lcb(weight * 100, weight), abs=1e-12)
    assert reps["agent.b"].stars <= reps["agent.a"].stars <= reps["agent.c"].stars


def test_half_life_is_a_parameter() -> None:
    rep = compute([rec(quality=100.0, age=10 * DAY)], NOW, half_life_days=10.0)["agent.a"]
    assert (rep.quality, rep.quality_lcb) == (100.0, pytest.approx(lcb(50.0, 0.5), abs=1e-12))


def test_failed_counts_zero_and_a_lost_contest_counts_its_quality_but_no_refusal() -> None:
    records = [
        rec(quality=90.0, outcome="accepted", latency=100.0, cost=30, n=1),
        rec(quality=70.0, outcome="not_selected", latency=200.0, cost=0, n=2),
        rec(quality=55.0, outcome="failed", latency=300.0, cost=0, n=3),
        rec(quality=None, outcome="refunded", latency=400.0, cost=10, n=4),
    ]
    rep = compute(records, NOW)["agent.a"]
    assert (rep.executions, rep.delivered, rep.accepted, rep.decided) == (4, 2, 1, 3)
    assert rep.quality == (90 + 70 + 0 + 0) / 4
    assert rep.acceptance_rate == 1 / 3  # not_selected is left out: a lost contest is no refusal
    assert rep.cost_per_accepted == 40.0  # (30 + 0 + 0 + 10) / 1 accepted
    assert rep.speed_p50 == 100.0  # delivered: 100 and 200, lower median


def test_cost_per_accepted_includes_retries_with_decay() -> None:
    records = [
        rec(outcome="accepted", cost=100, n=1),
        rec(outcome="refunded", cost=40, n=2),
        rec(outcome="rejected", cost=0, n=3),
        rec(outcome="accepted", cost=60, age=30 * DAY, n=4),
    ]
    rep = compute(records, NOW)["agent.a"]
    assert rep.cost_per_accepted == pytest.approx((100 + 40 + 0.5 * 60) / 1.5, abs=1e-12)
    assert rep.acceptance_rate == pytest.approx(1.5 / 3.5, abs=1e-15)


def test_no_accepted_attempt_has_no_cost_per_accepted() -> None:
    rep = compute([rec(outcome="rejected", cost=0)], NOW)["agent.a"]
    assert (rep.cost_per_accepted, rep.acceptance_rate) == (None, 0.0)


def test_nothing_delivered_has_no_speed() -> None:
    rep = compute([rec(quality=None, outcome="failed")], NOW)["agent.a"]
    assert (rep.speed_p50, rep.quality, rep.delivered) == (None, 0.0, 0)


@pytest.mark.parametrize(
    ("latencies_and_ages", "expected"),
    [
        ([(10.0, 0), (20.0, 0), (30.0, 0)], 20.0),
        ([(10.0, 0), (20.0, 0)], 10.0),  # lower median
        ([(10.0, 0), (10.0, 0), (20.0, 0)], 10.0),  # ties
        ([(10.0, 0), (20.0, 60), (30.0, 60)], 10.0),  # weights 1, 1/4, 1/4
        ([(10.0, 60), (20.0, 0)], 20.0),  # weights 1/4, 1
        ([(30.0, 60), (20.0, 60), (20.0, 60), (10.0, 0)], 10.0),  # 1/4 each, then 1
    ],
)
def test_speed_is_the_decay_weighted_lower_median(
    latencies_and_ages: list[tuple[float, int]], expected: float
) -> None:
    records = [
        rec(latency=latency, age=days * DAY, n=i)
        for i, (latency, days) in enumerate(latencies_and_ages)
    ]
    assert compute(records, NOW)["agent.a"].speed_p50 == expected


def test_rank_is_a_mid_rank_percentile_of_the_lower_bound() -> None:
    records = [
        rec("agent.low", quality=40.0),
        rec("agent.mid", quality=60.0),
        rec("agent.tie", quality=60.0),
        rec("agent.top", quality=90.0),
    ]
    ranks = {agent: r.rank for agent, r in compute(records, NOW).items()}
    assert ranks == {"agent.low": 0.0, "agent.mid": 50.0, "agent.tie": 50.0, "agent.top": 100.0}


def test_result_is_ordered_by_agent() -> None:
    records = [rec("agent.c"), rec("agent.a"), rec("agent.b")]
    assert list(compute(records, NOW)) == ["agent.a", "agent.b", "agent.c"]


def test_newcomer_with_two_perfect_results_ranks_below_a_good_veteran() -> None:
    fresh = [rec("agent.new", quality=100.0, age=i * DAY, n=i) for i in range(2)]
    veteran = [rec("agent.old", quality=85.0, age=dt.timedelta(hours=i), n=i) for i in range(200)]
    reps = compute(fresh + veteran, NOW)
    new, old = reps["agent.new"], reps["agent.old"]
    assert new.quality > old.quality  # its work scored higher, and the figure says so ...
    assert new.quality_lcb < old.quality_lcb  # ... but two jobs bound it well below
    assert (new.rank, old.rank) == (0.0, 100.0)
    assert new.stars < old.stars
    # Thin evidence of a higher quality still ranks below thick evidence: 4 perfect results
    # bound below 200 at 85; from 5 perfect results on, the newcomer's bound is the higher.
    for jobs, first in ((4, "agent.old"), (5, "agent.new")):
        fresh = [rec("agent.new", quality=100.0, age=i * DAY, n=i) for i in range(jobs)]
        reps = compute(fresh + veteran, NOW)
        assert max(reps.values(), key=lambda r: r.quality_lcb).agent == first


def test_same_owner_executions_are_not_counted() -> None:
    counted = [rec(quality=70.0, n=1)]
    own = [rec(quality=100.0, client_owner="actor.owner-agent.a", n=i) for i in range(2, 50)]
    assert compute(counted + own, NOW) == compute(counted, NOW)
    assert compute(own, NOW) == {}


def test_records_after_now_are_ignored() -> None:
    before = [rec(quality=60.0, age=10 * DAY, n=1)]
    later = [rec(quality=100.0, age=dt.timedelta(0), n=2)]
    assert compute(before + later, NOW - 5 * DAY) == compute(before, NOW - 5 * DAY)
    assert compute(later, NOW - DAY) == {}


def test_contract_filter_exact_or_any_version() -> None:
    records = [
        rec(quality=90.0, contract="contract.code_review@1.0.0", n=1),
        rec(quality=30.0, contract="contract.code_review@2.0.0", n=2),
        rec(quality=10.0, contract="contract.code_review_plus@1.0.0", n=3),
    ]
    one = compute(records, NOW, contract="contract.code_review@1.0.0")["agent.a"]
    every = compute(records, NOW, contract="contract.code_review")["agent.a"]
    assert (one.executions, one.quality) == (1, 90.0)
    assert (every.executions, every.quality) == (2, 60.0)
    assert compute(records, NOW, contract="contract.other") == {}


def test_trend_is_now_minus_thirty_days_ago() -> None:
    records = [rec(quality=60.0, age=(40 + i) * DAY, n=i) for i in range(5)]
    records += [rec(quality=90.0, age=i * DAY, n=10 + i) for i in range(5)]
    rep = compute(records, NOW)["agent.a"]
    then = compute(records, NOW - 30 * DAY)["agent.a"]
    assert rep.trend_30d == pytest.approx(rep.quality - then.quality, abs=1e-9)
    assert rep.trend_30d > 0


def test_newcomer_is_the_prior() -> None:
    rep = newcomer("agent.x")
    assert rep == Reputation("agent.x", 0, 50.0, lcb(0.0, 0.0), None, None, None, 0.0, 0.0, None)
    assert rep.quality_lcb == pytest.approx(50 - 164.5 * math.sqrt(0.25 / 4), abs=1e-12)


def test_to_dict_lists_every_field_in_order() -> None:
    rep = compute([rec()], NOW)["agent.a"]
    assert list(rep.to_dict()) == [f.name for f in dataclasses.fields(Reputation)]
    assert rep.to_dict() == dataclasses.asdict(rep)


# --- errors --------------------------------------------------------------------------------


def test_now_must_be_aware() -> None:
    with pytest.raises(UsageError) as info:
        compute([], NOW.replace(tzinfo=None))
    assert str(info.value) == "reputation: now has no time zone; pass an aware UTC instant"


@pytest.mark.parametrize("half_life", [0.0, -1.0, math.inf, math.nan])
def test_half_life_must_be_positive(half_life: float) -> None:
    with pytest.raises(UsageError, match="half_life_days .* is invalid; pass a positive number"):
        compute([], NOW, half_life_days=half_life)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"outcome": "won"},
            (
                "execution exec.x: outcome 'won' is unknown; use one of ['accepted', 'failed', "
                "'not_selected', 'refunded', 'rejected']"
            ),
        ),
        (
            {"finished_at": NOW.replace(tzinfo=None)},
            "execution exec.x: finished_at has no time zone; pass an aware UTC instant",
        ),
        (
            {"latency_seconds": -1.0},
            (
                "execution exec.x: latency_seconds -1.0 is invalid; pass a finite number of "
                "seconds >= 0"
            ),
        ),
        (
            {"latency_seconds": math.inf},
            (
                "execution exec.x: latency_seconds inf is invalid; pass a finite number of "
                "seconds >= 0"
            ),
        ),
        (
            {"quality": 100.5},
            "execution exec.x: quality 100.5 is out of range; pass 0-100 or None",
        ),
        (
            {"quality": math.nan},
            "execution exec.x: quality nan is out of range; pass 0-100 or None",
        ),
        ({"cost": -1}, "execution exec.x: reworks and cost must be >= 0; fix the record"),
        ({"reworks": -1}, "execution exec.x: reworks and cost must be >= 0; fix the record"),
    ],
)
def test_invalid_records_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as info:
        dataclasses.replace(rec(), id="exec.x", **change)  # type: ignore[arg-type]
    assert str(info.value) == message


# --- properties ----------------------------------------------------------------------------

AGENTS = ["agent.a", "agent.b", "agent.c"]


@st.composite
def record_lists(draw: st.DrawFn, min_size: int = 1) -> list[Execution]:
    """Counted records (never same-owner) over three agents and the past 200 days."""
    size = draw(st.integers(min_size, 25))
    records = []
    for n in range(size):
        outcome = draw(st.sampled_from(sorted(reputation.OUTCOMES)))
        records.append(
            rec(
                draw(st.sampled_from(AGENTS)),
                quality=draw(st.none() | st.floats(0, 100) | st.integers(0, 100).map(float)),
                age=dt.timedelta(seconds=draw(st.integers(0, 200 * 86400))),
                outcome=outcome,
                latency=float(draw(st.integers(1, 20))),  # small range: plenty of ties
                cost=draw(st.integers(0, 500)) if outcome in ("accepted", "refunded") else 0,
                n=n,
            )
        )
    return records


@SETTINGS
@given(record_lists(), st.randoms(use_true_random=False))
def test_recomputation_is_independent_of_input_order(
    records: list[Execution], rnd: random.Random
) -> None:
    shuffled = list(records)
    rnd.shuffle(shuffled)
    first, second = compute(records, NOW), compute(reversed(shuffled), NOW)
    assert first == second
    assert list(first) == list(second)


@SETTINGS
@given(
    record_lists(),
    st.integers(0, 200 * 86400),
    st.floats(0, 1),
    st.sampled_from(AGENTS),
)
def test_an_accepted_result_at_or_above_the_estimate_never_lowers_it(
    records: list[Execution], age: int, above: float, agent: str
) -> None:
    before = compute(records, NOW).get(agent, newcomer(agent)).quality
    quality = before + above * (100 - before)
    extra = rec(agent, quality=quality, age=dt.timedelta(seconds=age), n=999)
    after = compute([*records, extra], NOW)[agent].quality
    assert after >= before - 1e-9  # tolerance: the last bits of two float divisions


@SETTINGS
@given(record_lists(), st.integers(3600, 400 * 86400))
def test_without_new_records_quality_stays_and_a_good_agents_bound_and_stars_fade(
    records: list[Execution], advance: int
) -> None:
    now = compute(records, NOW)
    later = compute(records, NOW + dt.timedelta(seconds=advance))
    assert list(now) == list(later)
    for agent, rep in now.items():
        then = later[agent]
        assert then.quality == pytest.approx(rep.quality, abs=1e-9)  # the scores did not change
        assert then.executions == rep.executions
        if rep.quality >= 50.0:  # the evidence fades: the bound slides down to the prior's
            assert then.quality_lcb <= rep.quality_lcb + 1e-9
            assert then.stars <= rep.stars
            assert then.quality_lcb >= newcomer(agent).quality_lcb - 1e-9


@SETTINGS
@given(record_lists(), st.sampled_from(AGENTS), st.lists(st.floats(0, 100), max_size=10))
def test_same_owner_executions_never_move_reputation(
    records: list[Execution], agent: str, qualities: list[float]
) -> None:
    own = [
        rec(agent, quality=q, client_owner=f"actor.owner-{agent}", age=i * DAY, n=500 + i)
        for i, q in enumerate(qualities)
    ]
    assert compute(records + own, NOW) == compute(records, NOW)


@SETTINGS
@given(record_lists(min_size=2))
def test_rank_follows_the_lower_bound(records: list[Execution]) -> None:
    reps = list(compute(records, NOW).values())
    for a in reps:
        for b in reps:
            if a.quality_lcb < b.quality_lcb:
                assert a.rank < b.rank and a.stars <= b.stars
            elif a.quality_lcb == b.quality_lcb:
                assert a.rank == b.rank


@SETTINGS
@given(st.integers(0, 100), st.integers(0, 100))
def test_trend_sign_follows_improving_or_degrading_records(old: int, new: int) -> None:
    """Two records a day for 90 days: ``old`` quality before 30 days ago, ``new`` since."""
    records = [
        rec(
            quality=float(new if day < 30 else old),
            age=day * DAY + k * 12 * dt.timedelta(hours=1),
            n=2 * day + k,
        )
        for day in range(90)
        for k in range(2)
    ]
    rep = compute(records, NOW)["agent.a"]
    then = compute(records, NOW - 30 * DAY)["agent.a"]
    assert rep.trend_30d == pytest.approx(rep.quality - then.quality, abs=1e-9)
    if new == old:
        assert abs(rep.trend_30d) < 1e-9
    else:
        assert (rep.trend_30d > 0) == (new > old)
