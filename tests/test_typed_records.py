"""Typed records: each validates once at load and its ``to_json()`` gives back what was written."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import fields
from typing import get_type_hints

import pytest
from pydantic import ValidationError

from aismm.core.assessment import AssessmentRecord
from aismm.core.document import CheckResult
from aismm.core.reputation import Execution
from aismm.infra.ledger import Closure
from aismm.services import lifecycle, market
from aismm.web import chart

RECORD = {"schema_version": 1, "agent": "bob", "n": 2, "status": "listed", "badge": "silver",
          "quality": 85, "p50_seconds": 1.5, "cost": 100, "reasons": [],
          "tasks": [{"contract": "c@1.0.0", "task": "t1", "dod": "pass", "quality": 85,
                     "seconds": 1.5, "misses": [], "failed_checks": []}],
          "at": "2026-01-01T00:00:00Z"}


def test_an_assessment_record_round_trips_to_the_same_json_bytes() -> None:
    record = AssessmentRecord.model_validate(RECORD)
    assert record.at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # parsed once, aware
    assert record.listed and record.quality == 85 and isinstance(record.quality, int)
    assert json.dumps(record.to_json()) == json.dumps(RECORD)  # same keys, order, values


@pytest.mark.parametrize(("field", "value"), [
    ("status", "maybe"), ("at", "2026-01-01 00:00"), ("at", "2026-01-01T00:00:00"),
    ("schema_version", 2), ("n", "two"), ("extra", 1)])
def test_a_malformed_assessment_record_is_refused_at_load(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        AssessmentRecord.model_validate({**RECORD, field: value})


def test_the_escrow_record_carries_exactly_the_closure_fields() -> None:
    hints = get_type_hints(lifecycle.Escrow)
    assert list(hints) == ["state", "balance", *(f.name for f in fields(Closure))]


def test_a_verdict_check_summary_carries_exactly_the_check_result_fields() -> None:
    assert list(get_type_hints(lifecycle.CheckSummary)) == list(CheckResult.model_fields)


def test_a_listing_row_serialises_every_field_in_order() -> None:
    row = market.ListingRow(
        agent="a", owner="o", roles=("specialist",), contracts=("c@1.0.0",), status="listed",
        badge=None, price=10, capacity=2, assessed_quality=90.0, executions=0, quality=90.0,
        quality_lcb=None, speed_p50=None, cost_per_accepted=None, acceptance_rate=None,
        stars=None, rank=None, trend_30d=None, delivered=0, accepted=0, decided=0,
        quality_basis="assessment")
    out = row.to_json()
    assert list(out) == [f.name for f in fields(market.ListingRow)]
    assert out["roles"] == ["specialist"] and out["contracts"] == ["c@1.0.0"]


def test_ranking_rows_serialise_as_before() -> None:
    ranked = market.RankedRow(agent="a", score=1.5, reputation=80.0, price_score=0.5,
                              load_score=1.0, inputs={"owner": "o"})
    assert list(ranked.to_json()) == ["agent", "score", "reputation", "price_score",
                                      "load_score", "inputs", "eligible"]
    assert ranked.to_json()["eligible"] is True
    assert market.ExcludedRow(agent="b", why="not listed").to_json() == {
        "agent": "b", "eligible": False, "why": "not listed"}


def _run(n: int, at: dt.datetime, quality: float | None, seconds: float, cost: int) -> Execution:
    return Execution(id=f"x{n}", agent="bob", agent_owner="bob-co", client="alice",
                     client_owner="alice-co", contract="c@1.0.0", mission=f"m{n}",
                     finished_at=at, latency_seconds=seconds, quality=quality,
                     outcome="accepted", reworks=0, cost=cost)


def test_the_trend_chart_reads_typed_execution_records() -> None:
    now = dt.datetime(2026, 3, 30, 12, tzinfo=dt.UTC)
    runs = [_run(1, now, 80.0, 2.0, 100), _run(2, now - dt.timedelta(hours=1), 90.0, 4.0, 200),
            _run(3, now - dt.timedelta(days=1), None, 6.0, 50),
            _run(4, now - dt.timedelta(days=40), 10.0, 1.0, 1)]  # outside the 30 days
    drawn = {s.name: s.values for s in chart.trend(runs, now).series}
    assert drawn["quality"][-2:] == [None, 85.0]
    assert drawn["speed"][-2:] == [6.0, 3.0]
    assert drawn["economics"][-2:] == [50.0, 150.0]
    assert all(v is None for v in drawn["quality"][:-2])
