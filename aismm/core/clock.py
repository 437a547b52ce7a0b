"""The one source of time: inject a :class:`FixedClock` in tests, never sleep."""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Annotated, Protocol

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Clock", "Duration", "FixedClock", "Instant", "SystemClock", "default_clock",
           "duration_text", "iso", "parse_duration"]


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    """Wall-clock UTC time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: dt.datetime | str) -> None:
        self._now = _parse_instant(start) if isinstance(start, str) else start

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta | str) -> None:
        self._now += parse_duration(delta) if isinstance(delta, str) else delta


def _parse_instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def default_clock() -> Clock:
    """The system clock, or a fixed one when ``AISMM_NOW`` is set (for tests and demos)."""
    fixed = os.environ.get("AISMM_NOW")
    return FixedClock(fixed) if fixed else SystemClock()


MAX_DURATION_TEXT = "P36525D"
MAX_DURATION = dt.timedelta(days=36525)  # 100 years: any instant plus it is still a date

_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


def parse_duration(text: str) -> dt.timedelta:
    """Parse an ISO 8601 duration of days/hours/minutes/seconds (``P3D``, ``PT2H30M``)."""
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration like P3D or PT2H")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    too_long = ValueError(f"{text!r} is longer than {MAX_DURATION_TEXT} (100 years); give a "
                          "shorter duration")
    if any(value > 10 * MAX_DURATION.total_seconds() for value in parts.values()):
        raise too_long  # before timedelta sees it: a huge count would overflow it
    span = dt.timedelta(
        days=parts.get("d", 0), hours=parts.get("h", 0),
        minutes=parts.get("m", 0), seconds=parts.get("s", 0),
    )
    if span > MAX_DURATION:
        raise too_long
    return span


def iso(moment: dt.datetime) -> str:
    """Render an instant as ``2026-11-25T14:00:00Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant_value(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("an instant must carry its time zone (write it with Z)")
        return value.astimezone(dt.UTC)
    if isinstance(value, str) and INSTANT_TEXT.match(value):
        return _parse_instant(value)
    raise ValueError(f"{value!r} is not an instant like 2026-11-25T14:00:00Z")


INSTANT_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")

# An instant in a document: read once into an aware UTC datetime, written back as ``...Z``.
Instant = Annotated[
    dt.datetime,
    BeforeValidator(_instant_value),
    PlainSerializer(iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": INSTANT_TEXT.pattern}),
]


def duration_text(span: dt.timedelta) -> str:
    """A duration as canonical ISO 8601 text (``P3D``, ``PT2H30M``, ``P1DT12H``)."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") \
        if days or time else "PT0S"


def _duration_value(value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not an ISO 8601 duration like P3D or PT2H")


# A duration in a document: parsed once by the strict parser, written back as ISO 8601 text.
Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_duration_value),
    PlainSerializer(duration_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$"}),
]
