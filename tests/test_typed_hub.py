"""Typed records on a real hub (the session's reference hub, copied): what `--json` prints is
the record's one ``to_json()``, equal to what the registry holds, and a record that does not
validate is refused with one line, not read as a dict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aismm.core.assessment import AssessmentRecord
from aismm.core.model import load_yaml
from aismm.core.refs import MAIN
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import market, registrar
from aismm.state import registry
from tests.clikit import run
from tests.hubkit import copy_hub


@pytest.fixture()
def hub(reference_hub: Path, tmp_path: Path) -> Hub:
    registry.forget()
    return copy_hub(reference_hub, tmp_path / "hub")


def test_agent_show_prints_the_record_the_registry_holds(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    assert tip is not None
    path = "assessments/ref-code-reviewer/0001.yaml"
    written = load_yaml(repo.read(tip, path) or b"", path)
    record = registry.latest_assessment(hub, "ref-code-reviewer")
    assert isinstance(record, AssessmentRecord) and record.at.tzinfo is not None
    shown = run(hub.root, capsys, "agent", "show", "ref-code-reviewer", "--json")
    assert shown.code == 0
    assert shown.json["assessment"] == written == record.to_json()
    # one serialiser: the CLI's bytes are the canonical dump of to_json()
    assert shown.out == json.dumps({"manifest": shown.json["manifest"],
                                    "assessment": record.to_json()},
                                   indent=2, sort_keys=True) + "\n"


def test_agent_list_and_rank_print_the_rows_to_json(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    listed = run(hub.root, capsys, "agent", "list", "--json")
    assert listed.code == 0
    assert listed.json == [r.to_json() for r in market.listing(hub)]
    ranked = run(hub.root, capsys, "agent", "rank", "--contract", "contract.code_review",
                 "--json")
    assert ranked.code == 0
    rows = market.ranking(hub, "contract.code_review")
    assert ranked.json == [r.to_json() for r in rows]
    assert {r.agent for r in rows if isinstance(r, market.RankedRow)} == {
        r["agent"] for r in ranked.json if r["eligible"]}


def test_a_record_that_does_not_validate_is_refused_with_one_line(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    bad = b"schema_version: 1\nagent: ref-code-reviewer\nn: 9\nstatus: listed\n"  # fields short
    registrar.commit_files(hub, {"assessments/ref-code-reviewer/0009.yaml": bad},
                           "Assess ref-code-reviewer: listed\n", hub.config.platform)
    registry.forget()
    shown = run(hub.root, capsys, "agent", "list", "--json")
    assert shown.code == 3 and shown.out == ""
    assert len(shown.err_lines) == 1
    assert shown.err_lines[0].startswith(
        "aismm: registry.git:assessments/ref-code-reviewer/0009.yaml: not an assessment "
        "record (")
    assert shown.err_lines[0].endswith("; restore it from the platform's commit")
