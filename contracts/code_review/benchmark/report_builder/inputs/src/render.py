"""Render report rows as aligned plain text."""

from __future__ import annotations


def render_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Return the rows as a fixed-width table with a header line."""
    widths = {c: len(c) for c in columns}
    for row in rows:
        for column in columns:
            widths[column] = max(widths[column], len(str(row.get(column, ""))))
    header = "  ".join(c.ljust(widths[c]) for c in columns)
    lines = [header, "  ".join("-" * widths[c] for c in columns)]
    for row in rows:
        lines.append("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def percent(part: float, whole: float) -> str:
    if not whole:
        return "n/a"
    return f"{100 * part / whole:.1f}%"
