"""Path rules that the attack suite does not cover by a push."""

from __future__ import annotations

import pytest

from aismm.core.safepath import path_problem


@pytest.mark.parametrize("name", ["deliverable/report\u202egpj.exe", "deliverable/\u2066x",
                                  "deliverable/a\u200fb"])
def test_bidi_controls_are_refused(name: str) -> None:
    assert path_problem(name) == ("name contains a bidirectional-text control (it can disguise "
                                  "the name); rename it")


def test_plain_unicode_names_are_fine() -> None:
    assert path_problem("deliverable/résumé-数据.json") is None
