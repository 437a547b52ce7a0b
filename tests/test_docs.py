"""Generated artefacts must not drift from the code: README CLI table, JSON Schemas, errors."""

from __future__ import annotations

from pathlib import Path

import aismm.core.errors
from aismm.cli.docs import END, START, reference
from aismm.core.schemas import MODELS, render

ROOT = Path(__file__).resolve().parent.parent


def test_readme_cli_table_is_generated_from_click() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == reference().strip(), \
        "README CLI table drifted: run python -m aismm.cli.docs --write README.md"


def test_published_schemas_match_models() -> None:
    for name in MODELS:
        path = ROOT / "docs" / "schemas" / f"{name}.schema.json"
        assert path.read_text() == render(name), \
            f"{path} drifted: run aismm schema export docs/schemas"


def test_readme_quickstart_has_exactly_two_setup_lines() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("python3 -m venv ")]
    assert len(lines) == 2
    assert lines[0].endswith("aismm demo") and "pytest" in lines[1]


def test_errors_all_is_complete_and_documented() -> None:
    classes = {name for name, obj in vars(aismm.core.errors).items()
               if isinstance(obj, type) and issubclass(obj, Exception)}
    assert classes <= set(aismm.core.errors.__all__)
    for name in classes:
        assert getattr(aismm.core.errors, name).__doc__, f"{name} lacks a docstring"
        assert name in (aismm.core.errors.__doc__ or "") or name == "AismmError"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_stand_alone() -> None:
    """A user has README.md and docs/ only: no page leans on the original design notes."""
    for page in DOCS:
        text = page.read_text()
        for word in ("DESIGN", "shared/"):
            assert word not in text, f"{page.relative_to(ROOT)} refers to {word}"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    kept = "".join(ch for ch in heading.strip().lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def test_relative_links_resolve() -> None:
    """Every relative link of README.md and docs/*.md names a file that exists, and every
    ``#anchor`` a heading of that page."""
    import re

    for page in DOCS:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.relative_to(ROOT)}: broken link {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
                assert anchor in {_slug(h) for h in headings}, \
                    f"{page.relative_to(ROOT)}: no heading for #{anchor} in {path or page.name}"
