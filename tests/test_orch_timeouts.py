"""A workflow step's ``claim`` and ``step`` timeouts, applied by ``aismm tick`` on the hub
clock: a child whose agent never pushes is replaced by the next candidate after ``claim``; a
step not accepted ``step`` after its first child opened is given up (its live child refunded
into the parent), and the parent fails or continues by ``on_failure``. The money adds up and
a repeated tick changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.core.plan import Decision, Figure
from aismm.gate.plan import decision_problem
from aismm.infra.git import Repo
from aismm.infra.ledger import Ledger
from aismm.services import client, orchestration, registrar, settlement
from aismm.services.mission import open_mission
from aismm.state import registry
from tests import clikit
from tests.orchkit import FLOW, PAIR, Flow, add_agent, copy_site, orch_template, start_flow
from tests.settlekit import CLIENT, Site

TIMED = "timeouts: {attempt: PT1H}"
LIMITS = "timeouts: {claim: PT10M, attempt: PT1H, step: PT25M}"


@pytest.fixture(scope="module")
def template(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return orch_template(settle_template, tmp_path_factory)


def _republish(site: Site, cid: str, edit: dict[str, str]) -> None:
    """Publish version 1.0.1 of a test workflow contract with ``edit`` applied (the latest
    version is the one a mission names without a version)."""
    repo = Repo(site.hub.registry_path)
    main = repo.ref("refs/heads/main") or ""
    files: dict[str, bytes | None] = {}
    for path in repo.flatten(main):
        if path.startswith(f"contracts/{cid}/1.0.0/"):
            files[path.replace("/1.0.0/", "/1.0.1/")] = repo.read(main, path)
    key = f"contracts/{cid}/1.0.1/contract.yaml"
    text = (files[key] or b"").decode().replace("version: 1.0.0", "version: 1.0.1", 1)
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    files[key] = text.encode()
    registrar.commit_files(site.hub, files, "Timed workflow\n", site.hub.config.platform)


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Site:
    site = copy_site(template, tmp_path)
    _republish(site, FLOW, {TIMED: LIMITS, "max_attempts: 2": "max_attempts: 3"})
    _republish(site, PAIR, {TIMED: LIMITS, "max_attempts: 2": "max_attempts: 3",
                            "    max_price: 1000\n  - id: second":
                            "    max_price: 1000\n    on_failure: continue\n  - id: second"})
    return site


def tick(flow: Flow) -> list[str]:
    lines = client.tick(flow.site.hub)
    flow.process()
    return lines


def decisions(flow: Flow) -> list[str]:
    tip = flow.site.git(flow.id, "rev-parse", "attempts/ref-orchestrator").stdout.strip()
    return flow.site.git(flow.id, "ls-tree", "--name-only", f"{tip}:plan").stdout.split()


def notes(flow: Flow) -> list[str]:
    return [o.note for _n, o in sorted(orchestration.plan_of(flow.site.hub, flow.id)
                                       .outcomes.items())]


def state(flow: Flow) -> tuple[dict[str, int], str, str]:
    with Ledger(flow.site.hub.db_path, flow.site.hub.clock) as ledger:
        balances = ledger.balances()
    tip = flow.site.git(flow.id, "rev-parse", "attempts/ref-orchestrator").stdout.strip()
    return balances, tip, flow.site.status(flow.id)["state"]


def test_a_child_that_never_claims_is_replaced_after_claim_by_the_next_candidate(
        site: Site) -> None:
    add_agent(site, "mute-rev", "silent", 100)  # external, never pushes; ranked first
    add_agent(site, "mute-two", "silent", 150)
    add_agent(site, "good-rev", "good", 300)
    flow = start_flow(site)
    assert flow.children() == [("first", "mute-rev", "open")]
    site.advance("PT9M")
    assert tick(flow) == []
    assert flow.children() == [("first", "mute-rev", "open")]  # not before its claim is up
    site.advance("PT2M")
    lines = tick(flow)
    assert f"aismm: {flow.id}: step first: mute-rev never claimed {flow.id}-d001 (claim " \
        "timeout PT10M)" in lines
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml"]
    assert flow.children() == [("first", "mute-rev", "refunded"), ("first", "mute-two", "open")]
    assert notes(flow)[0] == "claim timeout"
    site.advance("PT11M")
    tick(flow)
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml", "003-fallback.yaml"]
    assert flow.children() == [("first", "mute-rev", "refunded"),
                               ("first", "mute-two", "refunded"),
                               ("first", "good-rev", "accepted")]
    tree = flow.tree()
    assert (tree["steps"][0]["state"], tree["steps"][0]["attempts"]) == ("accepted", 3)
    # each unclaimed child was refunded like a missed deadline: T1 keeps its fee
    assert [c["cost"] for c in tree["children"]] == [10, 15, 330]
    assert site.status(flow.id)["state"] == "awaiting_acceptance"
    flow.conserved()
    # the step's own timeout passes later: an accepted step is left alone, and ticks are no-ops
    site.advance("PT1H")
    before = state(flow)
    assert tick(flow) == []
    assert state(flow) == before


def test_a_step_past_its_step_timeout_is_given_up_and_fails_the_parent(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for agent, price in (("mute-rev", 100), ("mute-two", 150), ("mute-three", 200)):
        add_agent(site, agent, "silent", price)
    flow = start_flow(site)
    site.advance("PT11M")
    tick(flow)
    site.advance("PT11M")
    tick(flow)
    assert flow.children() == [("first", "mute-rev", "refunded"),
                               ("first", "mute-two", "refunded"),
                               ("first", "mute-three", "open")]
    site.advance("PT4M")  # 26 minutes after the first child opened: past the step's 25
    monkeypatch.setenv("AISMM_NOW", site.now())
    done = clikit.run(site.root, capsys, "tick", "--json")  # the command a hub operator runs
    assert done.code == 0, done.err
    assert f"aismm: {flow.id}: step first given up (its step timeout PT25M passed)" in \
        done.json["lines"]
    flow.process()
    assert decisions(flow) == ["001-open.yaml", "002-fallback.yaml", "003-fallback.yaml"]
    assert flow.children() == [("first", "mute-rev", "refunded"),
                               ("first", "mute-two", "refunded"),
                               ("first", "mute-three", "refunded")]
    assert notes(flow) == ["claim timeout", "claim timeout", "step timeout"]
    tree = flow.tree()
    assert tree["steps"][0]["state"] == "given_up"
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "refunded"
    # T1: the parent's fee and the three children's fees are kept, the rest comes back
    assert (closure.fee, closure.client_refund) == (100, 1000 - 10 - 15 - 20)
    assert site.balance(f"client:{CLIENT}") == 10_000 - 100 - 10 - 15 - 20
    flow.conserved()
    # ticking again changes nothing: no refund twice, no record rewritten
    before = state(flow)
    assert tick(flow) == []
    assert state(flow) == before


def test_a_timed_out_step_with_on_failure_continue_lets_the_next_step_run(site: Site) -> None:
    add_agent(site, "mute-rev", "silent", 100)
    flow = start_flow(site, contract=PAIR)
    assert flow.children() == [("first", "mute-rev", "open")]
    site.advance("PT26M")  # claim and step both passed: the step timeout wins
    lines = tick(flow)
    assert f"aismm: {flow.id}: step first given up (its step timeout PT25M passed)" in lines
    # on_failure: continue: the parent lives on and the step needing the first one opens
    assert decisions(flow) == ["001-open.yaml", "002-open.yaml"]
    assert flow.children() == [("first", "mute-rev", "refunded"), ("second", "mute-rev", "open")]
    plan = orchestration.plan_of(site.hub, flow.id)
    assert plan.steps["first"].given_up and not plan.failed
    assert notes(flow)[0] == "step timeout"
    assert site.closure(flow.id) is None
    # the gate refuses any new child for the timed-out step
    fallback = Decision(mission=flow.id, number=3, kind="fallback", step="first",
                        agent="mute-rev", price=100,
                        routing=[Figure(agent="mute-rev", score=0, price=100)])
    snap = registry.snapshot(Repo(site.hub.registry_path))
    doc = open_mission(site.hub, flow.id)[1].doc
    problem = decision_problem(doc, plan, None, fallback, 3, "fallback", snap.actors,
                               snap.manifests)
    assert problem == ("step first is already given up", "decide on another step")
    flow.conserved()
    before = state(flow)
    assert tick(flow) == []
    assert state(flow) == before


def test_a_step_timeout_finishes_after_its_child_was_refunded_but_not_recorded(
        site: Site) -> None:
    """As after a crash between the child's refund and the platform's record: the next tick
    records it, gives the step up and fails the parent, refunding nothing twice."""
    add_agent(site, "mute-rev", "silent", 100)
    flow = start_flow(site)
    [child] = flow.tree()["children"]
    site.advance("PT26M")
    settlement.refund(site.hub, child["id"], "deadline")  # its record still says open
    assert flow.children() == [("first", "mute-rev", "open")]
    tick(flow)
    assert flow.children() == [("first", "mute-rev", "refunded")]
    assert notes(flow) == ["step timeout"]
    closure = site.closure(flow.id)
    assert closure is not None and closure.kind == "refunded"
    assert (closure.fee, closure.client_refund) == (100, 1000 - 10)
    flow.conserved()
