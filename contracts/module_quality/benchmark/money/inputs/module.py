"""Money helpers: amounts are integer cents."""

from __future__ import annotations

import re


def parse_amount(text: str) -> int:
    """Parse a user-typed amount into cents; the last ',' or '.' before 1-2 digits is decimal.

    >>> parse_amount("12.34")
    1234
    >>> parse_amount("€ 1.234,50")
    123450
    >>> parse_amount("7")
    700
    >>> parse_amount("-0.5")
    -50
    >>> parse_amount("abc")
    Traceback (most recent call last):
    ...
    ValueError: not an amount: 'abc'
    """
    cleaned = re.sub(r"[^\d,.\-]", "", text)
    if not re.search(r"\d", cleaned):
        raise ValueError(f"not an amount: {text!r}")
    negative = cleaned.startswith("-")
    cleaned = cleaned.lstrip("-")
    last = max(cleaned.rfind(","), cleaned.rfind("."))
    if last != -1 and len(cleaned) - last - 1 in (1, 2):
        whole, fraction = cleaned[:last], cleaned[last + 1:]
    else:
        whole, fraction = cleaned, ""
    cents = int(re.sub(r"[,.]", "", whole) or "0") * 100 + int(fraction.ljust(2, "0") or "0")
    return -cents if negative else cents


def format_cents(cents: int, currency: str = "EUR") -> str:
    """Format cents with a thousands separator and the currency code.

    >>> format_cents(123450)
    '1,234.50 EUR'
    >>> format_cents(-5, "USD")
    '-0.05 USD'
    """
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{rest:02d} {currency}"


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` cents into ``parts`` shares that differ by at most one cent.

    >>> split_evenly(100, 3)
    [34, 33, 33]
    """
    if parts <= 0:
        raise ValueError("parts must be positive")
    base, extra = divmod(total, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def apply_discount(cents: int, percent: float) -> int:
    """Reduce an amount by ``percent`` (0-100), rounding the discount to the nearest cent."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    return cents - round(cents * percent / 100)
