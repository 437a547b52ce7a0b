"""The exception tree drawn in aismm/core/errors.py is the tree of its classes: every class, under
its real parent, with the exit code it really has."""

from __future__ import annotations

import inspect
import re

from aismm.core import errors


def _drawn() -> dict[str, tuple[str | None, int]]:
    """{class: (parent, exit code)} read from the module docstring's drawing."""
    doc = errors.__doc__ or ""
    found: dict[str, tuple[str | None, int]] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(?P<lead>[\s│├└─]*)(?P<name>[A-Z]\w+)\s+exit (?P<code>\d)", line)
        if not match:
            continue
        depth = len(match["lead"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        found[match["name"]] = (parent, int(match["code"]))
        stack.append((depth, match["name"]))
    return found


def test_the_drawn_tree_matches_the_classes() -> None:
    real = {
        name: (cls.__base__.__name__ if cls is not errors.AismmError else None, cls.exit_code)
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.AismmError)
    }
    assert _drawn() == real
