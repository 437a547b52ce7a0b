"""Path rules that the attack suite does not cover by a push."""

from __future__ import annotations

import unicodedata

import pytest

from aismm.core.safepath import path_problem


@pytest.mark.parametrize("name", ["deliverable/report\u202egpj.exe", "deliverable/\u2066x",
                                  "deliverable/a\u200fb"])
def test_bidi_controls_are_refused(name: str) -> None:
    assert path_problem(name) == ("name contains a bidirectional-text control (it can disguise "
                                  "the name); rename it")


def test_plain_unicode_names_are_fine() -> None:
    assert path_problem("deliverable/résumé-数据.json") is None


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_is_judged_as_its_unicode_category_says(code: int) -> None:
    """An ASCII name takes a shortcut past the NFC and per-character checks: the control
    characters it refuses are exactly those of category Cc (C0 and DEL), wherever they sit."""
    ch = chr(code)
    for name in (f"deliverable/{ch}x", f"deliverable/x{ch}", f"deliverable/x{ch}y"):
        problem = path_problem(name)
        if unicodedata.category(ch) == "Cc":
            assert problem == "name contains a control character; rename it", name
        else:
            assert problem is None or "control character" not in problem, (name, problem)


@pytest.mark.parametrize("name", ["a/.GIT/x", "a/.git./x", "a/.Git . /x", "a/git~1/x",
                                  "a/.gi\u200dt/x"])
def test_git_folders_are_refused_in_every_spelling(name: str) -> None:
    assert path_problem(name) == ("path names .git (in some spelling); git metadata cannot be "
                                  "committed")
