"""docs/reputation.md's worked figures are the code's: the table of consistently 100/100 work
and the worked example are recomputed here from the page itself."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from aismm.core.reputation import (
    Execution,
    compute,
    newcomer,
    shown_quality,
    stars_for,
)
from aismm.core.routing import Candidate, rank

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reputation.md"
NOW = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"### {title}\n")
    end = text.index("\n## ", start)
    return text[start:end]


def _table(section: str) -> list[list[str]]:
    """The rows of the first Markdown table in ``section``, header and rule dropped."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return rows[2:]


def _job(n: int, *, quality: float | None = 100.0, age: dt.timedelta = dt.timedelta(0),
         outcome: str = "accepted", latency: float = 60.0, cost: int = 100,
         agent: str = "agent.x") -> Execution:
    return Execution(id=f"{agent}.{n}", agent=agent, agent_owner="owner.a", client="client.c",
                     client_owner="owner.c", contract="contract.code_review@1.0.0",
                     mission=f"m{n}", finished_at=NOW - age, latency_seconds=latency,
                     quality=quality, outcome=outcome, reworks=0, cost=cost)


def test_the_table_of_consistently_excellent_work_is_the_codes() -> None:
    rows = _table(_section("Worked table: consistently 100/100 work"))
    assert [row[0] for row in rows] == ["0", "1", "2", "5", "8", "10", "20"]
    for jobs_text, quality_text, bound_text, stars_text in rows:
        jobs = int(jobs_text)
        reps = compute([_job(i) for i in range(jobs)], NOW)
        if jobs == 0:  # no record: no reputation; the listing shows the assessed quality
            assert reps == {}
            assert (bound_text, stars_text) == ("—", "—")
            shown = re.search(r"`(.+)`", quality_text)
            assert shown is not None and shown.group(1) == shown_quality(None, 0, 97.7)
            continue
        rep = reps["agent.x"]
        assert quality_text == shown_quality(rep.quality, rep.executions, 97.7)
        assert f"{rep.quality_lcb:.2f}" == bound_text
        assert f"{rep.stars:.1f}" == stars_text == f"{stars_for(float(bound_text)):.1f}"


def test_five_stars_first_come_with_the_eighth_excellent_job() -> None:
    stars = [compute([_job(i) for i in range(n)], NOW)["agent.x"].stars for n in range(1, 21)]
    assert stars == sorted(stars)  # more excellent work never costs a star
    assert stars.index(5.0) + 1 == 8
    assert "after 8 jobs" in PAGE.read_text()


def test_a_lost_contest_with_a_perfect_deliverable_counts_like_an_accepted_one() -> None:
    won = compute([_job(0)], NOW)["agent.x"]
    lost = compute([_job(0, outcome="not_selected", cost=0)], NOW)["agent.x"]
    assert (lost.quality, lost.quality_lcb, lost.stars) == (won.quality, won.quality_lcb,
                                                            won.stars)
    assert (won.acceptance_rate, lost.acceptance_rate) == (1.0, None)  # no refusal either
    both = compute([_job(0), _job(1, outcome="not_selected", cost=0)], NOW)["agent.x"]
    assert (both.acceptance_rate, both.decided, both.executions) == (1.0, 1, 2)


def test_the_worked_example_is_the_codes() -> None:
    records = [
        _job(0, quality=90.0, latency=1200.0, cost=100, agent="agent.rev"),
        _job(1, quality=70.0, age=30 * DAY, outcome="not_selected", latency=600.0, cost=0,
             agent="agent.rev"),
        _job(2, quality=None, age=45 * DAY, outcome="failed", latency=3600.0, cost=0,
             agent="agent.rev"),
        _job(3, quality=80.0, age=60 * DAY, latency=900.0, cost=120, agent="agent.rev"),
    ]
    rep = compute(records, NOW)["agent.rev"]
    section = PAGE.read_text().split("## Worked example", 1)[1].split("\n## ", 1)[0]
    bold = re.findall(r"\*\*([^*]+)\*\*", section)
    assert bold == [f"{rep.quality:.4f}", f"{rep.quality_lcb:.4f}", f"{rep.stars:.1f}",
                    f"{rep.speed_p50:.0f} s", f"{rep.acceptance_rate:.4f}",
                    f"{rep.cost_per_accepted:g}", f"{rep.trend_30d:+.4f}"]
    assert (rep.executions, rep.delivered, rep.accepted, rep.decided) == (4, 3, 2, 3)
    # the routing example that follows uses this bound
    ranked = rank([Candidate("agent.rev", "owner.a", 100, 4, 1, True),
                   Candidate("agent.b", "owner.b", 150, 2, 0, True)], {"agent.rev": rep})
    routing = PAGE.read_text().split("## Routing score", 1)[1]
    assert f"agent.rev = 100 · (0.6 · {rep.quality_lcb / 100:.6f}" in routing
    shown = {name: float(value) for name, value in
             re.findall(r"(agent\.\w+) = 100 · \([^)]*\) = \*\*([0-9.]+)\*\*", routing)}
    assert shown == {r.agent: pytest.approx(r.score, abs=0.006) for r in ranked}


def test_a_newcomer_has_the_priors_bound_and_no_stars() -> None:
    rep = newcomer("agent.n")
    assert (rep.quality_lcb, rep.stars, rep.trend_30d, rep.acceptance_rate) == (
        pytest.approx(8.875), 0.0, None, None)
    assert shown_quality(None, 0, None) == "-"
