"""Routing: who is eligible, how the score orders candidates, and what gets recorded."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aismm.core.errors import UsageError
from aismm.core.reputation import Reputation, newcomer
from aismm.core.routing import DEFAULT_WEIGHTS, Candidate, Weights, exclusions, rank


def cand(
    agent: str,
    *,
    owner: str | None = None,
    price: int = 100,
    capacity: int = 4,
    open_attempts: int = 0,
    listed: bool = True,
) -> Candidate:
    return Candidate(agent, owner or f"actor.owner-{agent}", price, capacity, open_attempts, listed)


def rep(agent: str, lcb: float) -> Reputation:
    return Reputation(agent, 10, lcb + 5, lcb, 60.0, 100.0, 0.8, round(lcb / 20, 1), 50.0, 0.0)


def score(lcb: float, price_score: float, load_score: float) -> float:
    """The documented default score, written out independently of the module."""
    return 100 * (0.6 * lcb / 100 + 0.25 * price_score + 0.15 * load_score) / 1.0


def test_own_unlisted_and_full_agents_are_excluded() -> None:
    candidates = [
        cand("agent.own", owner="actor.client"),
        cand("agent.unlisted", listed=False),
        cand("agent.full", capacity=2, open_attempts=2),
        cand("agent.over", capacity=2, open_attempts=3),
        cand("agent.zero", capacity=0),
        cand("agent.ok"),
    ]
    ranked = rank(candidates, {}, client_owner="actor.client")
    assert [r.agent for r in ranked] == ["agent.ok"]
    assert exclusions(candidates, client_owner="actor.client") == {
        "agent.full": "at capacity (2/2 open attempts)",
        "agent.over": "at capacity (3/2 open attempts)",
        "agent.own": "owned by the client",
        "agent.unlisted": "not listed",
        "agent.zero": "at capacity (0/0 open attempts)",
    }


def test_without_a_client_owner_nobody_is_excluded_for_ownership() -> None:
    candidates = [cand("agent.a", owner="actor.client")]
    assert [r.agent for r in rank(candidates, {})] == ["agent.a"]
    assert exclusions(candidates) == {}


def test_cheaper_wins_at_equal_reputation() -> None:
    reps = {"agent.a": rep("agent.a", 70.0), "agent.b": rep("agent.b", 70.0)}
    ranked = rank([cand("agent.a", price=200), cand("agent.b", price=100)], reps)
    assert [(r.agent, r.price_score, r.score) for r in ranked] == [
        ("agent.b", 1.0, score(70.0, 1.0, 1.0)),
        ("agent.a", 0.0, score(70.0, 0.0, 1.0)),
    ]


def test_higher_reputation_wins_at_equal_price() -> None:
    reps = {"agent.a": rep("agent.a", 60.0), "agent.b": rep("agent.b", 80.0)}
    ranked = rank([cand("agent.a"), cand("agent.b")], reps)
    assert [(r.agent, r.reputation, r.score) for r in ranked] == [
        ("agent.b", 80.0, score(80.0, 1.0, 1.0)),
        ("agent.a", 60.0, score(60.0, 1.0, 1.0)),
    ]


def test_price_and_load_scores_are_relative_and_linear() -> None:
    reps = {a: rep(a, 50.0) for a in ("agent.a", "agent.b", "agent.c")}
    candidates = [
        cand("agent.a", price=100, capacity=4, open_attempts=1),
        cand("agent.b", price=150, capacity=4, open_attempts=3),
        cand("agent.c", price=300, capacity=2, open_attempts=0),
    ]
    got = {r.agent: (r.price_score, r.load_score, r.score) for r in rank(candidates, reps)}
    assert got == {
        "agent.a": (1.0, 0.75, score(50.0, 1.0, 0.75)),
        "agent.b": (0.75, 0.25, score(50.0, 0.75, 0.25)),
        "agent.c": (0.0, 1.0, score(50.0, 0.0, 1.0)),
    }


def test_price_range_is_taken_over_eligible_candidates_only() -> None:
    candidates = [cand("agent.a", price=100), cand("agent.b", price=10, listed=False)]
    assert rank(candidates, {})[0].price_score == 1.0  # alone in its range


def test_ties_are_broken_by_agent_id() -> None:
    candidates = [cand("agent.c"), cand("agent.a"), cand("agent.b")]
    ranked = rank(candidates, {})
    assert [r.agent for r in ranked] == ["agent.a", "agent.b", "agent.c"]
    assert len({r.score for r in ranked}) == 1


def test_unknown_agents_rank_with_the_newcomer_prior() -> None:
    ranked = rank([cand("agent.new"), cand("agent.old")], {"agent.old": rep("agent.old", 9.0)})
    prior = newcomer("agent.new").quality_lcb
    assert {r.agent: r.reputation for r in ranked} == {"agent.new": prior, "agent.old": 9.0}
    assert {r.agent: r.inputs["newcomer"] for r in ranked} == {
        "agent.new": True,
        "agent.old": False,
    }


def test_every_input_is_recorded() -> None:
    reps = {"agent.a": rep("agent.a", 70.0)}
    candidates = [
        cand("agent.a", owner="actor.p", price=120, capacity=5, open_attempts=2),
        cand("agent.b", price=80),
    ]
    ranked = {r.agent: r for r in rank(candidates, reps, client_owner="actor.c")}
    assert ranked["agent.a"].inputs == {
        "agent": "agent.a",
        "owner": "actor.p",
        "client_owner": "actor.c",
        "price": 120,
        "price_min": 80,
        "price_max": 120,
        "capacity": 5,
        "open_attempts": 2,
        "quality_lcb": 70.0,
        "executions": 10,
        "newcomer": False,
        "weights": {"reputation": 0.6, "price": 0.25, "load": 0.15},
    }
    assert ranked["agent.a"].score == score(70.0, 0.0, 0.6)


def test_weights_change_the_order_and_only_their_ratio_matters() -> None:
    reps = {"agent.good": rep("agent.good", 90.0), "agent.cheap": rep("agent.cheap", 40.0)}
    candidates = [cand("agent.good", price=500), cand("agent.cheap", price=50)]
    assert rank(candidates, reps)[0].agent == "agent.good"
    thrifty = rank(candidates, reps, weights=Weights(reputation=1, price=4, load=0))
    assert [r.agent for r in thrifty] == ["agent.cheap", "agent.good"]
    doubled = Weights(reputation=1.2, price=0.5, load=0.3)
    assert [r.score for r in rank(candidates, reps, weights=doubled)] == pytest.approx(
        [r.score for r in rank(candidates, reps, weights=DEFAULT_WEIGHTS)], abs=1e-12
    )


def test_nothing_eligible_gives_an_empty_ranking() -> None:
    assert rank([cand("agent.a", listed=False)], {}) == []
    assert rank([], {}) == []


def test_an_agent_offered_twice_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        rank([cand("agent.a"), cand("agent.a", price=5)], {})
    assert str(info.value) == "routing: agent agent.a is offered twice; pass each agent once"


@pytest.mark.parametrize("weights", [(-1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (float("nan"), 1.0, 1.0)])
def test_invalid_weights_are_refused(weights: tuple[float, float, float]) -> None:
    with pytest.raises(UsageError, match=r"routing weights .*: invalid; use finite weights"):
        Weights(*weights)


@pytest.mark.parametrize("field", ["price", "capacity", "open_attempts"])
def test_negative_candidate_numbers_are_refused(field: str) -> None:
    with pytest.raises(UsageError) as info:
        dataclasses.replace(cand("agent.a"), **{field: -1})  # type: ignore[arg-type]
    assert str(info.value) == (
        "candidate agent.a: price, capacity and open_attempts must be >= 0; "
        "fix the manifest or the attempt count"
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 500),  # price
            st.integers(0, 5),  # capacity
            st.integers(0, 6),  # open attempts
            st.booleans(),  # listed
            st.sampled_from(["actor.client", "actor.p", "actor.q"]),  # owner
            st.floats(0, 99),  # quality_lcb
        ),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_ranking_is_deterministic_and_never_offers_the_ineligible(
    rows: list[tuple[int, int, int, bool, str, float]], rnd: random.Random
) -> None:
    candidates = [
        cand(f"agent.a{i:02d}", owner=o, price=p, capacity=c, open_attempts=n, listed=ok)
        for i, (p, c, n, ok, o, _) in enumerate(rows)
    ]
    reps = {f"agent.a{i:02d}": rep(f"agent.a{i:02d}", row[5]) for i, row in enumerate(rows)}
    ranked = rank(candidates, reps, client_owner="actor.client")
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert rank(shuffled, reps, client_owner="actor.client") == ranked
    for r in ranked:
        c = next(c for c in candidates if c.agent == r.agent)
        assert c.listed and c.owner != "actor.client" and c.open_attempts < c.capacity
        assert 0.0 <= r.score <= 100.0
        assert 0.0 <= r.price_score <= 1.0 and 0.0 < r.load_score <= 1.0
    excluded = exclusions(candidates, client_owner="actor.client")
    assert sorted([r.agent for r in ranked] + list(excluded)) == sorted(c.agent for c in candidates)
    keys = [(-r.score, r.agent) for r in ranked]
    assert keys == sorted(keys)
