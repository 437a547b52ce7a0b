"""SIGKILL the hub while it executes a workflow decision, then run ``aismm process`` again: no
child is opened twice, nothing is paid twice, and the run completes.

``AISMM_CRASH_AT`` names the point (aismm/services/orchestration.py): after a child mission was
created and funded but before its record was written (``orch-after-child``); after a failed
child was refunded for a fallback but before the next child exists (``orch-after-close``);
after a child's acceptance merge but before it was paid (``orch-after-accept``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import mission
from tests.orchkit import FLOW, ORCH, Flow, add_agent, copy_site, orch_template
from tests.settlekit import CLIENT, REVIEW_INPUTS, Site


@pytest.fixture(scope="module")
def template(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return orch_template(settle_template, tmp_path_factory)


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Site:
    return copy_site(template, tmp_path)


@pytest.mark.parametrize("point", ["orch-after-child", "orch-after-close", "orch-after-accept"])
def test_a_killed_hub_resumes_without_duplicates(site: Site, point: str) -> None:
    add_agent(site, "bad-rev", "bad", 200)
    add_agent(site, "good-rev", "good", 300)
    created = mission.create(site.hub, contract_ref=FLOW, client=CLIENT, inputs=REVIEW_INPUTS,
                             price=1000, tier="T1", agents=[ORCH])
    flow = Flow(site, created.doc.id, [])
    killed = site.cli("process", AISMM_CRASH_AT=point)
    assert killed.code == -9, killed.err
    again = site.cli("process")
    assert again.code == 0, again.err
    children = sorted(p.name.removesuffix(".git") for p in site.hub.missions_dir.iterdir()
                      if p.name.startswith(f"{flow.id}-"))
    assert children == [f"{flow.id}-d001", f"{flow.id}-d002"]
    assert flow.children() == [("first", "bad-rev", "refunded"), ("first", "good-rev",
                                                                   "accepted")]
    with Ledger(site.hub.db_path, site.hub.clock) as ledger:
        funding = [t for t in ledger.history(f"escrow:{flow.id}") if t.action == "fund"
                   and t.debit == f"escrow:{flow.id}"]
        paid = [t for t in ledger.history("provider:cheapo")]
    assert sorted((t.mission, t.amount) for t in funding) == [
        (f"{flow.id}-d001", 20), (f"{flow.id}-d001", 200),
        (f"{flow.id}-d002", 30), (f"{flow.id}-d002", 300)]
    assert [(t.mission, t.amount) for t in paid] == [(f"{flow.id}-d002", 300)]
    assert site.status(flow.id)["state"] == "awaiting_acceptance"
    flow.conserved()


def test_a_decision_whose_event_failed_is_finished_by_aismm_process(site: Site) -> None:
    """The hub died executing a decision and its events were then marked failed (as a handler
    exception marks them): `aismm process` resumes every open workflow and the run completes."""
    add_agent(site, "good-rev", "good", 300)
    created = mission.create(site.hub, contract_ref=FLOW, client=CLIENT, inputs=REVIEW_INPUTS,
                             price=1000, tier="T1", agents=[ORCH])
    flow = Flow(site, created.doc.id, [])
    assert site.cli("process", AISMM_CRASH_AT="orch-after-child").code == -9
    with Store(site.hub.db_path) as store:
        pending = [e.id for e in store.events() if e.status == "pending"]
        for event_id in pending:
            store.finish(event_id, {"error": "simulated"}, site.now(), "failed")
        assert store.pending() == 0
    assert flow.children() == []  # the child exists, its record does not
    again = site.cli("process")
    assert again.code == 0, again.err
    assert flow.children() == [("first", "good-rev", "accepted")]
    assert site.status(flow.id)["state"] == "awaiting_acceptance"
    flow.conserved()
