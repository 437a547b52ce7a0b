"""The agent page's 30-day trend chart: three daily series (quality, speed, economics) drawn as
inline SVG polylines, each scaled to its own range (no JavaScript)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from aismm.core.reputation import Execution

__all__ = ["Chart", "Series", "trend"]

DAYS = 30
WIDTH, HEIGHT, PAD = 600, 200, 24


@dataclass(frozen=True)
class Series:
    """One line: its name, colour, the day values (None: no job that day), and the points."""

    name: str
    colour: str
    values: list[float | None]
    points: str
    unit: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    start: str
    end: str
    series: list[Series]


def _points(values: list[float | None], higher_is_better: bool) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    out = []
    for day, value in enumerate(values):
        if value is None:
            continue
        share = (value - low) / span if high != low else 0.5
        if not higher_is_better:
            share = 1 - share
        x = PAD + day * (WIDTH - 2 * PAD) / (DAYS - 1)
        y = HEIGHT - PAD - share * (HEIGHT - 2 * PAD)
        out.append(f"{x:.1f},{y:.1f}")
    return " ".join(out)


def trend(executions: list[Execution], now: dt.datetime) -> Chart:
    """Daily quality (mean), speed (median seconds) and economics (mean cost) of the last 30
    days of an agent's execution records."""
    first = (now - dt.timedelta(days=DAYS - 1)).date()
    days: list[list[Execution]] = [[] for _ in range(DAYS)]
    for run in executions:
        index = (run.finished_at.astimezone(dt.UTC).date() - first).days
        if 0 <= index < DAYS:
            days[index].append(run)

    def daily(figure: Callable[[Execution], float | None], how: str) -> list[float | None]:
        out: list[float | None] = []
        for runs in days:
            values = [float(v) for r in runs if (v := figure(r)) is not None]
            if not values:
                out.append(None)
            else:
                out.append(statistics.median(values) if how == "median"
                           else statistics.fmean(values))
        return out

    quality = daily(lambda r: r.quality, "mean")
    speed = daily(lambda r: r.latency_seconds, "median")
    cost = daily(lambda r: r.cost, "mean")
    return Chart(WIDTH, HEIGHT, first.isoformat(), now.date().isoformat(), [
        Series("quality", "#1b7f3b", quality, _points(quality, True), "score"),
        Series("speed", "#1f5fbf", speed, _points(speed, False), "s (p50)"),
        Series("economics", "#b35900", cost, _points(cost, False), "tokens"),
    ])
