"""Integrity: only judged, signed, timely state moves money (issue 11), against real hubs.

Each test owns a copy of a ready hub (``settlekit``), drives it with the real CLI and plain git,
and asserts on refs and the ledger.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aismm import events
from tests.settlekit import AGENT, CLIENT, GOLDEN, ROOT, Result, Site, make_site, run_git

PRICE, FEE = 400, 40


@pytest.fixture()
def site(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Site:
    return make_site(tmp_path_factory, tmp_path)


def _clone(site: Site, mid: str, where: Path) -> Path:
    clone = where / f"clone-{mid}"
    run_git("clone", "-q", "--branch", f"attempts/{AGENT}", str(site.hub.mission_path(mid)),
            str(clone))
    return clone


def _commit(site: Site, clone: Path, date: str, files: dict[str, bytes] | None = None) -> None:
    for rel, data in (files or {}).items():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_bytes(data)
    run_git("add", "-A", cwd=clone)
    run_git("-c", "gpg.format=ssh", "-c", f"user.signingkey={site.hub.key_path(AGENT)}",
            "commit", "-q", "--allow-empty", "-S", "-m", "Deliver", cwd=clone,
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})


def _push(site: Site, clone: Path) -> None:
    run_git("push", "-q", "origin", f"HEAD:refs/heads/attempts/{AGENT}", cwd=clone,
            env={"AISMM_NOW": site.now()})


# -- 6. time comes from the hub -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["backdated delivery", "backdated empty commit after"])
def test_a_late_delivery_is_refunded_whatever_date_its_commits_claim(site: Site, tmp_path: Path,
                                                                      how: str) -> None:
    mid = site.create("T1")
    site.advance("P3DT1H")  # past the deadline (P3D)
    clone = _clone(site, mid, tmp_path)
    early = "2026-01-01T00:30:00+00:00"  # half an hour after creation
    _commit(site, clone, site.now() if how != "backdated delivery" else early,
            {"deliverable/findings.json": GOLDEN.read_bytes()})
    _push(site, clone)
    if how == "backdated empty commit after":
        run_git("pull", "-q", "--ff-only", cwd=clone)  # the verdicts the hub committed
        _commit(site, clone, early)
        _push(site, clone)
    status = site.status(mid)
    assert status["attempts"][0]["dod"] == "pass"
    assert status["state"] == "expired"

    result = site.cli("tick")

    assert result.code == 0, result.err
    assert result.out == f"escrow refunded (deadline): {PRICE} back to {CLIENT}, {FEE} fee kept " \
                         "by the platform\n"
    assert site.status(mid)["state"] == "refunded"


def test_a_delivery_received_in_time_is_not_refunded_by_a_later_dated_commit(
        site: Site, tmp_path: Path) -> None:
    mid = site.create("T1")
    site.advance("P1DT12H")
    clone = _clone(site, mid, tmp_path)
    _commit(site, clone, "2030-01-01T00:00:00+00:00",  # claims to come from the future
            {"deliverable/findings.json": GOLDEN.read_bytes()})
    _push(site, clone)
    site.advance("P1DT13H")  # past the deadline (P3D), inside the acceptance window (P2D)
    assert site.status(mid)["state"] == "awaiting_acceptance"
    assert site.cli("tick") == Result(0, "nothing to do\n", "")


# -- 7, 8. disputes are adjudicated, not raced ---------------------------------------------------


@pytest.fixture()
def queued(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Site:
    return make_site(tmp_path_factory, tmp_path, processing="daemon")


def test_the_arbiter_rules_on_the_dod_of_the_current_tree_not_a_missing_one(
        queued: Site, tmp_path: Path) -> None:
    from aismm import settlement

    site = queued
    mid = site.create("T1")
    clone = _clone(site, mid, tmp_path)
    _commit(site, clone, site.now(), {"deliverable/findings.json": GOLDEN.read_bytes()})
    _push(site, clone)  # queued: no DoD has run yet
    assert site.status(mid)["attempts"][0]["dod"] is None
    settlement.request(site.hub, mid, AGENT, "rework", "cite the lines")
    settlement.request(site.hub, mid, AGENT, "escalation", "I want my money back")

    lines = settlement.arbitrate(site.hub, mid, AGENT)  # racing the queued DoD

    assert any(line.startswith(f"aismm: platform DoD on {AGENT}: PASS") for line in lines), lines
    assert f"aismm: arbiter arbiter ruled RELEASE on attempts/{AGENT}" in lines
    assert site.status(mid)["state"] == "accepted"
    events.process(site.hub)
    assert site.status(mid)["state"] == "settled"
    ruling = yaml.safe_load(site.git(mid, "show", "refs/heads/accepted^2:verdicts/arbiter.yaml")
                            .stdout)
    assert "client's reason: I want my money back" in ruling["comments"]
    assert "DoD on the current tree: pass" in ruling["comments"]


def test_the_ruling_weighs_a_fresh_independent_review(site: Site, tmp_path: Path) -> None:
    from aismm import market, registry, settlement

    text = (ROOT / "aismm" / "agents" / "manifests" / "ref-reviewer.yaml").read_text()
    text = text.replace("id: ref-reviewer", "id: second-opinion").replace(
        "owner: qa-guild", "owner: opinions-inc")
    registry.add_actor(site.hub, "opinions-inc", ["client"], None, None, True)
    market.register_manifest(site.hub, market.load_manifest(text.encode(), "m"), "opinions-inc",
                             hosted=True)
    mid = site.create("T1")
    site.deliver(mid)
    before = site.status(mid)["attempts"][0]["verdicts"]
    assert "second-opinion" in before or "ref-reviewer" in before
    first = next(iter(r for r in before if r != "platform"))
    settlement.request(site.hub, mid, AGENT, "rework", "cite the lines")
    events.process(site.hub)
    settlement.request(site.hub, mid, AGENT, "escalation", "not convinced")
    events.process(site.hub)

    merge = site.refs(mid)["refs/heads/accepted"]
    head = site.git(mid, "rev-parse", f"{merge}^2").stdout.strip()
    ruling = yaml.safe_load(site.git(mid, "show", f"{head}:verdicts/arbiter.yaml").stdout)
    fresh = "ref-reviewer" if first == "second-opinion" else "second-opinion"
    assert f"fresh review by {fresh}: pass" in ruling["comments"], ruling["comments"]
    assert site.git(mid, "cat-file", "-e", f"{head}:verdicts/{fresh}.yaml", check=False
                    ).returncode == 0
    assert "client's reason: not convinced" in ruling["comments"]
