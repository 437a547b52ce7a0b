"""Workflow missions driven by the reference orchestrator and scripted agents: success, rework,
fallback on failure and on timeout, every candidate failing, budget exhaustion, cancellation.

Each run goes through the real hub: signed plan files judged by the gate, child missions in
their own repositories, the ledger, the sandbox, and ``worker.process`` passes alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.infra.ledger import Ledger
from aismm.services import settlement, worker
from tests import clikit
from tests.orchkit import PAIR, Flow, add_agent, copy_site, orch_template, start_flow
from tests.settlekit import CLIENT, ROOT, Site

QUALITY = ROOT / "contracts" / "module_quality"


@pytest.fixture(scope="module")
def template(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return orch_template(settle_template, tmp_path_factory)


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Site:
    return copy_site(template, tmp_path)


def decisions(flow: Flow) -> list[str]:
    repo = flow.site.hub.mission_path(flow.id)
    tip = flow.site.git(flow.id, "rev-parse", "attempts/ref-orchestrator").stdout.strip()
    del repo
    listing = flow.site.git(flow.id, "ls-tree", "--name-only", f"{tip}:plan", check=False)
    return listing.stdout.split()


def test_good_agent_first_time_then_assembled_accepted_and_settled(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    add_agent(site, "good-rev", "good", 300)
    flow = start_flow(site, price=1000)
    assert decisions(flow) == ["001-open.yaml"]
    assert flow.children() == [("first", "good-rev", "accepted")]
    st = site.status(flow.id)
    assert st["state"] == "awaiting_acceptance"
    [child] = flow.tree()["children"]
    assert (child["price"], child["fee"], child["paid"], child["escrow"]) == (300, 30, 300, 0)
    assert site.status(child["id"])["parent"] == flow.id
    flow.conserved()
    # the faces: mission tree (text and --json) and a child's status naming its parent
    monkeypatch.setenv("AISMM_NOW", site.now())
    tree = clikit.run(site.root, capsys, "mission", "tree", flow.id, "--json")
    assert tree.code == 0
    assert tree.json["children"] == [{
        "id": child["id"], "step": "first", "decision": 1, "agent": "good-rev",
        "state": "accepted", "price": 300, "fee": 30, "cost": 330, "escrow": 0,
        "closure": "settled", "paid": 300}]
    assert (tree.json["parent"], tree.json["state"], tree.json["budget"]) == (
        None, "awaiting_acceptance", {"total": 1000, "spent": 330, "left": 670})
    text = clikit.run(site.root, capsys, "mission", "tree", flow.id).out.splitlines()
    assert text[1:] == [
        "  orchestrator ref-orchestrator: budget 1000, spent 330, left 670",
        "  step first            accepted   attempts 1/2  cost 330 of share 1000  "
        "(contract.code_review@1.0.1)",
        f"    {child['id']}  good-rev  accepted  price 300 + fee 30  escrow 0  paid 300"]
    status = clikit.run(site.root, capsys, "mission", "status", child["id"])
    assert f"  parent: {flow.id} (a workflow step; `aismm mission tree {flow.id}`)" in \
        status.out.splitlines()
    # `mission run` of a workflow wakes its orchestrator, which has nothing left to decide
    rerun = clikit.run(site.root, capsys, "mission", "run", flow.id, "--json")
    assert (rerun.code, rerun.json["failures"]) == (0, [])
    assert site.status(flow.id)["attempts"][0]["failure"] is None
    missing = clikit.run(site.root, capsys, "mission", "tree", "nope-00000000")
    assert (missing.code, missing.err_lines) == (
        2, ["aismm: nope-00000000: no such mission; see `aismm mission list`"])
    # the client accepts the assembled report: the orchestrator's provider gets what is left
    settlement.accept(site.hub, flow.id, "ref-orchestrator")
    flow.process()
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "settled"
    assert (closure.provider, closure.fee, closure.client_refund) == (1000 - 330, 100, 0)
    assert site.balance(f"client:{CLIENT}") == 10_000 - 1100
    assert site.balance("provider:cheapo") == 300
    flow.conserved()


def test_a_failed_child_is_reworked_once_then_accepted(site: Site) -> None:
    add_agent(site, "flaky-rev", "flaky", 300)
    flow = start_flow(site)
    assert decisions(flow) == ["001-open.yaml", "002-rework.yaml"]
    assert flow.children() == [("first", "flaky-rev", "accepted")]
    [step] = flow.tree()["steps"]
    assert (step["state"], step["attempts"]) == ("accepted", 2)
    flow.conserved()


def test_a_failing_agent_falls_back_to_the_next_candidate(site: Site) -> None:
    add_agent(site, "bad-rev", "bad", 200)  # cheaper: ranked first; its DoD fails
    add_agent(site, "good-rev", "good", 300)
    flow = start_flow(site)
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml"]
    assert flow.children() == [("first", "bad-rev", "refunded"), ("first", "good-rev",
                                                                   "accepted")]
    tree = flow.tree()
    failed, _good = tree["children"]
    # the failed child's escrow went back to the parent, minus its fee (T1 keeps it)
    assert (failed["closure"], failed["cost"], failed["paid"]) == ("refunded", 20, 0)
    assert tree["budget"] == {"total": 1000, "spent": 20 + 330, "left": 650}
    assert tree["steps"][0]["attempts"] == 2
    assert site.balance("provider:cheapo") == 300
    assert site.status(flow.id)["state"] == "awaiting_acceptance"
    flow.conserved()


def test_a_silent_agent_times_out_and_the_step_falls_back(site: Site) -> None:
    add_agent(site, "mute-rev", "silent", 100)
    add_agent(site, "good-rev", "good", 300)
    flow = start_flow(site)
    assert flow.children() == [("first", "mute-rev", "open")]
    site.advance("PT59M")
    settlement.tick(site.hub)
    flow.process()
    assert flow.children() == [("first", "mute-rev", "open")]  # not before its hour is up
    site.advance("PT2M")
    settlement.tick(site.hub)
    flow.process()
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml"]
    assert flow.children() == [("first", "mute-rev", "refunded"), ("first", "good-rev",
                                                                    "accepted")]
    flow.conserved()


def test_every_candidate_failing_fails_the_parent_and_refunds_by_tier(site: Site) -> None:
    add_agent(site, "bad-one", "bad", 200)
    add_agent(site, "bad-two", "bad", 300)
    add_agent(site, "bad-three", "bad", 400)  # never tried: max_attempts is 2
    flow = start_flow(site)
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml", "003-give_up.yaml"]
    assert flow.children() == [("first", "bad-one", "refunded"), ("first", "bad-two",
                                                                   "refunded")]
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "refunded"
    # T1: the platform keeps the parent's fee and the failed children's; the rest comes back
    assert (closure.fee, closure.client_refund) == (100, 1000 - 20 - 30)
    assert site.balance(f"client:{CLIENT}") == 10_000 - 100 - 20 - 30
    assert site.status(flow.id)["state"] == "refunded"
    flow.conserved()


def test_budget_exhaustion_opens_no_child_beyond_it(site: Site) -> None:
    add_agent(site, "pricey-rev", "good", 950)  # 950 + 95 fee > the 1000 budget
    flow = start_flow(site, price=1000)
    assert decisions(flow) == ["001-give_up.yaml"]
    assert flow.tree()["children"] == []
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "refunded"
    flow.conserved()


def test_cancelling_the_parent_cancels_open_children_and_refunds(site: Site) -> None:
    add_agent(site, "mute-rev", "silent", 100)
    flow = start_flow(site)
    [child] = flow.tree()["children"]
    assert child["state"] == "open" and child["escrow"] == 110
    lines = settlement.cancel(site.hub, flow.id)
    assert lines[0] == f"aismm: escrow refunded (cancel): 110 back to escrow:{flow.id}"
    flow.process()
    assert site.closure(child["id"]).kind == "refunded"  # type: ignore[union-attr]
    assert site.balance(f"client:{CLIENT}") == 10_000
    assert site.status(flow.id)["state"] == "refunded"
    flow.conserved()


def test_module_quality_runs_end_to_end_with_the_reference_agents(site: Site) -> None:
    """The catalog's workflow: tests and a review in parallel, then a review of those tests
    (its input is the first child's accepted test file), assembled and checked (the report
    matches the records), with the reference agents at T1."""
    flow = start_flow(site, contract="contract.module_quality", price=2600,
                      inputs=QUALITY / "benchmark" / "mathx" / "inputs")
    assert decisions(flow) == ["001-open.yaml", "002-open.yaml", "003-open.yaml"]
    assert flow.children() == [("tests", "ref-test-writer", "accepted"),
                               ("review", "ref-code-reviewer", "accepted"),
                               ("test_review", "ref-code-reviewer", "accepted")]
    tests_child, _review, test_review = flow.tree()["children"]
    written = site.git(tests_child["id"], "show", "accepted:deliverable/test_module.py").stdout
    reviewed = site.git(test_review["id"], "show", "main:inputs/src/test_module.py").stdout
    assert reviewed == written
    [attempt] = site.status(flow.id)["attempts"]
    assert attempt["state"] == "awaiting_acceptance"
    assert [c["name"] for c in attempt["verdicts"]["platform"]["checks"]] == [
        "files", "schema", "matches-records"]
    flow.conserved()


def test_a_failed_t2_workflow_refunds_the_client_in_full_by_the_platform_guarantee(
        site: Site) -> None:
    # the platform has earned T2 fees before (a settled code review): they back its guarantee
    earlier = site.create("T2", contract="contract.code_review@1.0.0", price=2000)
    site.deliver(earlier)
    settlement.accept(site.hub, earlier, "ref-code-reviewer")
    worker.process(site.hub)
    assert site.balance("platform:fees") == 500
    add_agent(site, "once-rev", "first-only", 300)  # good on the first child, bad after
    flow = start_flow(site, contract=PAIR, price=1000, tier="T2")
    assert decisions(flow) == ["001-open.yaml", "002-open.yaml", "003-give_up.yaml"]
    assert flow.children() == [("first", "once-rev", "accepted"),
                               ("second", "once-rev", "refunded")]
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "refunded"
    # T2: nothing kept; the escrow returns 1250 - 375 (the first child, paid), and the
    # platform's guarantee pays those 375 from its fees: the client paid nothing for the run
    assert (closure.fee, closure.client_refund) == (0, 875)
    assert site.balance(f"client:{CLIENT}") == 10_000 - 2500
    assert site.balance("provider:cheapo") == 300
    assert site.balance("platform:fees") == 500 + 75 - 375
    assert flow.ledger_check() == []


def test_the_reference_orchestrator_is_assessed_on_real_workflow_runs(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`aismm agent assess ref-orchestrator`: each module_quality benchmark task is a real run
    with the reference agents (slow: three workflows), then cancelled; the money adds up."""
    monkeypatch.setenv("AISMM_NOW", site.now())
    done = clikit.run(site.root, capsys, "agent", "assess", "ref-orchestrator", "--json")
    assert done.code == 0, done.err
    record = done.json
    assert (record["status"], record["quality"], record["reasons"]) == ("listed", 100.0, [])
    assert [(t["task"], t["dod"], t["quality"], t["misses"]) for t in record["tasks"]] == [
        ("mathx", "pass", 100, []), ("money", "pass", 100, []), ("textkit", "pass", 100, [])]
    runs = [t["mission"] for t in record["tasks"]]
    for run in runs:
        assert site.closure(run).kind == "refunded"  # type: ignore[union-attr]
    with Ledger(site.hub.db_path, site.hub.clock) as ledger:
        assert ledger.check() == []
        held = {k: v for k, v in ledger.balances().items() if k.startswith("escrow:bench-")}
    assert len(held) == 3 * 4 and set(held.values()) == {0}  # 3 parents, 9 children, emptied
