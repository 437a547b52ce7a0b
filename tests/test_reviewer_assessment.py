"""Reviewers are assessed on the reviewer benchmark: is each verdict right?

The cases are each contract's goldens (right verdict: pass) and its ``review-benchmark/`` cases
(mostly known-bad). The session's reference hub (built like ``hub init --with-reference-agents``)
has ``ref-reviewer`` assessed and listed; here reviewers that always say pass, always say fail
or echo the platform's DoD verdict are assessed on a copy of it and rejected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.core.contract import load_contract_dir
from aismm.core.errors import ContractError
from aismm.core.model import dump_yaml
from aismm.infra.hub import Hub
from aismm.services import market, registrar, reviewbench
from aismm.services.reviewbench import ReviewResult
from tests import clikit, hubkit
from tests.hubkit import copy_hub

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "contracts"
ALL = ["contract.code_review@1.0.0", "contract.schema_design@1.0.0",
       "contract.unit_tests@1.0.0"]
# Hosted reviewers run as ``python -c SCRIPT`` in the sandbox, in the case's checkout.
SAYS = "import os\nopen(os.environ['AISMM_OUTPUT'], 'w').write('verdict: {v}\\nscore: {s}\\n')\n"
ECHO = ("import os\nsaid = 'pass' if 'verdict: pass' in open('verdicts/platform.yaml').read() "
        "else 'fail'\nopen(os.environ['AISMM_OUTPUT'], 'w').write(f'verdict: {said}\\n"
        "score: 90\\n')\n")
CRASH = "raise SystemExit('no opinion')\n"


def reviewer(agent: str, script: str, contracts: list[str]) -> str:
    return dump_yaml({"schema_version": 1, "id": agent, "owner": "mallory", "roles": ["reviewer"],
                      "contracts": contracts, "price": 100,
                      "runtime": {"kind": "command", "argv": ["{python}", "-c", script],
                                  "timeout_seconds": 20}})


@pytest.fixture(scope="module")
def hub(reference_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Hub:
    hub = copy_hub(reference_hub, tmp_path_factory.mktemp("reviewer-bench") / "hub")
    registrar.add_actor(hub, "mallory", ["client"], None, None, True)
    for agent, script, contracts in (
            ("yes-man", SAYS.format(v="pass", s=100), ALL),
            ("naysayer", SAYS.format(v="fail", s=0), ALL),
            ("dod-echo", ECHO, ALL[:1] + ALL[2:]),
            ("crasher", CRASH, ALL[:1])):
        market.register_manifest(hub, market.load_manifest(reviewer(agent, script, contracts),
                                                           agent), hosted=True)
    return hub


def reviews(record: dict[str, object]) -> list[ReviewResult]:
    tasks = record["tasks"]
    assert isinstance(tasks, list)
    found = [t for t in tasks if reviewbench.is_review(t)]
    assert len(found) == len(tasks)  # a reviewer alone runs no specialist task
    return found


def catalog_files(name: str) -> dict[str, bytes]:
    """A catalog contract folder as it is published in registry.git (path -> bytes)."""
    folder = CATALOG / name
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


# -- the reference reviewer --------------------------------------------------------------------
def test_reference_reviewer_is_listed_with_every_verdict_right(reference_hub: Path) -> None:
    hub = Hub(reference_hub)
    record = hubkit.assessment_json(hub, "ref-reviewer")
    assert record is not None
    assert (record["status"], record["badge"], record["quality"], record["reasons"]) == \
        ("listed", "gold", 100.0, [])
    cases = reviews(record)
    assert {c["contract"] for c in cases} == set(ALL)
    assert all(c["verdict"] == c["expected"] and c["quality"] == 100 and not c["misses"]
               for c in cases)
    for ref in ALL:  # goldens and known-bad ones, some of which pass the DoD
        mine = [c for c in cases if c["contract"] == ref]
        assert sum(c["expected"] == "pass" for c in mine) >= 3
        assert sum(c["expected"] == "fail" for c in mine) >= 3
    assert {c["task"] for c in cases if c["expected"] == "fail" and c["dod"] == "pass"} == {
        "http_helpers-no-findings", "http_helpers-misplaced", "inventory_service-info-only",
        "mathx-no-asserts"}
    # unit-test goldens pass only on a current platform verdict: the checkout's deliverable
    # tree is the one verdicts/platform.yaml names, as in a mission
    assert all(c["verdict"] == "pass" for c in cases if c["task"].endswith("-golden"))
    rows = {r.agent: r.to_json() for r in market.listing(hub)}
    assert (rows["ref-reviewer"]["status"], rows["ref-reviewer"]["badge"]) == ("listed", "gold")


def test_agent_assess_prints_the_reviewer_listed_with_its_score(
        hub: Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISMM_NOW", "2026-01-01T00:00:00Z")
    done = clikit.run(hub.root, capsys, "agent", "assess", "ref-reviewer")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == "ref-reviewer: LISTED (gold badge)"
    assert lines[1].startswith("  quality 100.0  p50 ") and lines[1].endswith("s  cost 150")
    assert "  contract.code_review@1.0.0 http_helpers-no-findings: said fail, expected fail" \
        in lines
    assert "  contract.unit_tests@1.0.0 mathx-golden: said pass, expected pass" in lines
    assert not any("reason" in line for line in lines)
    record = hubkit.assessment_json(hub, "ref-reviewer")
    assert record is not None and (record["n"], record["status"]) == (2, "listed")


# -- reviewers that do not judge are rejected --------------------------------------------------
def test_a_reviewer_that_always_says_pass_is_rejected(hub: Hub) -> None:
    record = market.assess(hub, "yes-man").to_json()
    assert (record["status"], record["badge"], record["quality"]) == ("rejected", None, 0.0)
    cases = reviews(record)
    bad = [c for c in cases if c["expected"] == "fail"]
    assert bad and all(c["verdict"] == "pass" and c["quality"] == 0 for c in bad)
    assert all(c["misses"][0].startswith("said pass on a known-bad deliverable (") for c in bad)
    counts = {ref: (sum(c["expected"] == "pass" for c in cases if c["contract"] == ref),
                    sum(c["contract"] == ref for c in cases),
                    sum(c["contract"] == ref for c in bad)) for ref in ALL}
    assert record["reasons"] == [
        f"{ref}: review quality 0.0 < {threshold} ({right} of {n} verdicts right, {passed} "
        f"known-bad passed)"
        for ref, threshold in zip(ALL, (80, 85, 80), strict=True)
        for right, n, passed in [counts[ref]]]
    assert hubkit.assessment_json(hub, "yes-man") == record
    assert market.task_reason(bad[0]) == bad[0]["misses"][0]


def test_a_reviewer_that_always_says_fail_is_rejected(hub: Hub) -> None:
    record = market.assess(hub, "naysayer").to_json()
    assert (record["status"], record["badge"]) == ("rejected", None)
    cases = reviews(record)
    assert all(c["verdict"] == "fail" for c in cases)
    good = [c for c in cases if c["expected"] == "pass"]
    assert good and all(c["misses"][0].startswith("said fail on a known-good deliverable (")
                        for c in good)
    for ref in ALL:  # right on every known-bad case, wrong on every good one: no contract passes
        mine = [c for c in cases if c["contract"] == ref]
        right = sum(c["expected"] == "fail" for c in mine)
        quality = round(100 * right / len(mine), 1)
        assert quality < 80
        assert any(r.startswith(f"{ref}: review quality {quality} < ") for r in record["reasons"])
    assert record["quality"] < 60


def test_a_reviewer_that_echoes_the_platform_dod_is_rejected(hub: Hub) -> None:
    """Known-bad deliverables that pass the DoD are what the review is for."""
    record = market.assess(hub, "dod-echo").to_json()
    assert record["status"] == "rejected"
    cases = reviews(record)
    assert all(c["verdict"] == c["dod"] for c in cases)
    wrong = sorted(c["task"] for c in cases if c["verdict"] != c["expected"])
    assert wrong == ["http_helpers-misplaced", "http_helpers-no-findings",
                     "inventory_service-info-only", "mathx-no-asserts"]
    assert [r.split(" (")[0] for r in record["reasons"]] == [
        "contract.code_review@1.0.0: review quality 0.0 < 80",
        "contract.unit_tests@1.0.0: review quality 58.3 < 80"]


def test_a_crashing_reviewer_is_wrong_on_every_case(hub: Hub) -> None:
    record = market.assess(hub, "crasher").to_json()
    assert (record["status"], record["quality"]) == ("rejected", 0.0)
    cases = reviews(record)
    assert all(c["verdict"] == "none" and c["quality"] == 0 for c in cases)
    assert all(c["misses"][0].startswith("exit 1: no opinion") for c in cases)


def test_an_external_reviewer_is_rejected_without_a_run(hub: Hub) -> None:
    text = reviewer("far-away", "", ALL[:1]).replace("kind: command", "kind: git")
    man = market.load_manifest(text, "far-away")
    market.register_manifest(hub, man, hosted=True)
    record = market.assess(hub, "far-away").to_json()
    assert (record["status"], record["tasks"]) == ("rejected", [])
    assert record["reasons"][0].startswith("review: external (git runtime) reviewers are not "
                                           "benchmarked yet")


def test_a_contract_without_known_bad_cases_cannot_list_a_reviewer(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    real = reviewbench.cases
    monkeypatch.setattr(reviewbench, "cases", lambda contract, files: [
        c for c in real(contract, files) if c.expected == "pass"])
    record = market.assess(hub, "yes-man").to_json()
    assert record["status"] == "rejected"
    assert all(c["verdict"] == "pass" == c["expected"] for c in reviews(record))
    assert record["reasons"] == [
        f"{ref}: no known-bad case in the contract's review-benchmark/; the contract cannot "
        "assess reviewers (publish a version with cases)" for ref in ALL]


# -- the cases and the scoring rule, without a hub ---------------------------------------------
@pytest.mark.parametrize("name", ["code_review", "schema_design", "unit_tests"])
def test_each_catalog_contract_has_goldens_and_known_bad_cases(name: str) -> None:
    contract = load_contract_dir(CATALOG / name)
    cases = reviewbench.cases(contract, catalog_files(name))
    tasks = sorted(p.name for p in (CATALOG / name / "benchmark").iterdir() if p.is_dir())
    assert [c.name for c in cases if c.name.endswith("-golden")] == [f"{t}-golden" for t in tasks]
    bad = [c for c in cases if c.expected == "fail"]
    assert len(bad) >= 3
    assert all(c.task in tasks and c.deliverable and c.why for c in cases)


def test_a_malformed_case_is_a_contract_error() -> None:
    contract = load_contract_dir(CATALOG / "code_review")
    files = catalog_files("code_review")
    case = "review-benchmark/http_helpers-no-findings/expect.yaml"
    for text, says in ((b"task: nowhere\nverdict: fail\n", "needs verdict: pass|fail and task"),
                       (b"task: http_helpers\nverdict: maybe\n", "needs verdict: pass|fail"),
                       (b"task: [\n", "line")):
        with pytest.raises(ContractError, match=says.replace("|", r"\|")):
            reviewbench.cases(contract, {**files, case: text})
    gone = {p: d for p, d in files.items()
            if not p.startswith("review-benchmark/http_helpers-no-findings/deliverable/")}
    with pytest.raises(ContractError, match="has no deliverable/ files"):
        reviewbench.cases(contract, gone)


def _result(expected: str, verdict: str) -> ReviewResult:
    return {"contract": "c", "task": "t", "kind": "review", "expected": expected,
            "verdict": verdict, "dod": "pass", "quality": 100 if expected == verdict else 0,
            "seconds": 0.1, "misses": [], "failed_checks": []}


def test_the_scoring_rule() -> None:
    good, bad = _result("pass", "pass"), _result("fail", "fail")
    assert reviewbench.score([good] * 4 + [bad] * 4) == (100.0, 8, 0)
    # a good deliverable failed costs its share; a known-bad one passed costs 25 more
    assert reviewbench.score([_result("pass", "fail")] + [good] * 3 + [bad] * 4) == \
        (87.5, 7, 0)
    assert reviewbench.score([good] * 4 + [_result("fail", "pass")] + [bad] * 3) == \
        (62.5, 7, 1)
    assert reviewbench.score([good] * 4 + [_result("fail", "none")] + [bad] * 3) == \
        (87.5, 7, 0)
    assert reviewbench.score([_result("pass", "pass")] + [_result("fail", "pass")] * 3) == \
        (0.0, 1, 3)
    assert reviewbench.score([]) == (0.0, 0, 0)
