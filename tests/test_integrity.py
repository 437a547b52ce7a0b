"""Integrity: only judged, signed, timely state moves money (issue 11), against real hubs.

Each test owns a copy of a ready hub (``settlekit``), drives it with the real CLI and plain git,
and asserts on refs and the ledger.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aismm.infra.store import Incident, Store
from aismm.services import disputes, registrar, worker
from tests.settlekit import AGENT, CLIENT, GOLDEN, ROOT, Result, Site, make_site, run_git

PRICE, FEE = 400, 40


@pytest.fixture()
def site(settle_template: Path, tmp_path: Path) -> Site:
    return make_site(settle_template, tmp_path)


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
def queued(settle_template: Path, tmp_path: Path) -> Site:
    return make_site(settle_template, tmp_path, processing="daemon")


def test_the_arbiter_rules_on_the_dod_of_the_current_tree_not_a_missing_one(
        queued: Site, tmp_path: Path) -> None:
    from aismm.services import settlement

    site = queued
    mid = site.create("T1")
    clone = _clone(site, mid, tmp_path)
    _commit(site, clone, site.now(), {"deliverable/findings.json": GOLDEN.read_bytes()})
    _push(site, clone)  # queued: no DoD has run yet
    assert site.status(mid)["attempts"][0]["dod"] is None
    settlement.request(site.hub, mid, AGENT, "rework", "cite the lines")
    settlement.request(site.hub, mid, AGENT, "escalation", "I want my money back")

    lines = disputes.arbitrate(site.hub, mid, AGENT)  # racing the queued DoD

    assert any(line.startswith(f"aismm: platform DoD on {AGENT}: PASS") for line in lines), lines
    assert f"aismm: arbiter arbiter ruled RELEASE on attempts/{AGENT}" in lines
    assert site.status(mid)["state"] == "accepted"
    worker.process(site.hub)
    assert site.status(mid)["state"] == "settled"
    ruling = yaml.safe_load(site.git(mid, "show", "refs/heads/accepted^2:verdicts/arbiter.yaml")
                            .stdout)
    assert "client's reason: I want my money back" in ruling["comments"]
    assert "DoD on the current tree: pass" in ruling["comments"]


def test_the_ruling_weighs_a_fresh_independent_review(site: Site, tmp_path: Path) -> None:
    from aismm.services import market, settlement

    text = (ROOT / "aismm" / "agents" / "manifests" / "ref-reviewer.yaml").read_text()
    text = text.replace("id: ref-reviewer", "id: second-opinion").replace(
        "owner: qa-guild", "owner: opinions-inc")
    registrar.add_actor(site.hub, "opinions-inc", ["client"], None, None, True)
    market.register_manifest(site.hub, market.load_manifest(text.encode(), "m"), "opinions-inc",
                             hosted=True)
    mid = site.create("T1")
    site.deliver(mid)
    before = site.status(mid)["attempts"][0]["verdicts"]
    assert "second-opinion" in before or "ref-reviewer" in before
    first = next(iter(r for r in before if r != "platform"))
    settlement.request(site.hub, mid, AGENT, "rework", "cite the lines")
    worker.process(site.hub)
    settlement.request(site.hub, mid, AGENT, "escalation", "not convinced")
    worker.process(site.hub)

    merge = site.refs(mid)["refs/heads/accepted"]
    head = site.git(mid, "rev-parse", f"{merge}^2").stdout.strip()
    ruling = yaml.safe_load(site.git(mid, "show", f"{head}:verdicts/arbiter.yaml").stdout)
    fresh = "ref-reviewer" if first == "second-opinion" else "second-opinion"
    assert f"fresh review by {fresh}: pass" in ruling["comments"], ruling["comments"]
    assert site.git(mid, "cat-file", "-e", f"{head}:verdicts/{fresh}.yaml", check=False
                    ).returncode == 0
    assert "client's reason: not convinced" in ruling["comments"]


# -- 1-5. only what the gate judged moves money or state ---------------------------------------


def _forge(site: Site, bare: Path, ref: str, clone: Path, rev: str = "HEAD") -> str:
    """Write ``ref`` in a bare repository the way a hook-skipping tool does; the forged id."""
    forged = run_git("rev-parse", rev, cwd=clone).stdout.strip()
    run_git("-C", str(bare), "fetch", "-q", str(clone), forged)  # objects in, no hooks
    run_git("-C", str(bare), "update-ref", ref, forged)
    return forged


def _incidents(site: Site) -> list[Incident]:
    with Store(site.hub.db_path) as store:
        return store.incidents()


@pytest.mark.parametrize("command", ["reconcile", "process", "tick"])
def test_an_unsigned_merge_written_by_the_agent_is_never_paid(site: Site, tmp_path: Path,
                                                             command: str) -> None:
    mid = site.create("T1")
    site.deliver(mid)
    bare = site.hub.mission_path(mid)
    clone = tmp_path / "forger"
    run_git("clone", "-q", str(bare), str(clone))
    run_git("checkout", "-q", "accepted", cwd=clone)
    run_git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "I accept myself",
            f"origin/attempts/{AGENT}", cwd=clone)
    main = site.refs(mid)["refs/heads/main"]
    funded = site.balances()
    forged = _forge(site, bare, "refs/heads/accepted", clone)

    result = site.cli(command)

    assert site.refs(mid)["refs/heads/accepted"] == main  # put back
    assert "refs/tags/settled" not in site.refs(mid)
    assert site.balances() == funded and site.closure(mid) is None
    [incident] = [i for i in _incidents(site) if i.found == forged]
    assert (incident.repo, incident.ref, incident.restored) == (
        f"missions/{mid}.git", "refs/heads/accepted", main)
    assert "escrow settled" not in result.out


def test_settle_acts_only_on_the_judged_acceptance(site: Site, tmp_path: Path) -> None:
    from aismm.core.errors import MissionError
    from aismm.services import settlement

    mid = site.create("T1")
    site.deliver(mid)
    bare = site.hub.mission_path(mid)
    clone = tmp_path / "forger"
    run_git("clone", "-q", str(bare), str(clone))
    run_git("checkout", "-q", "accepted", cwd=clone)
    run_git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "x", f"origin/attempts/{AGENT}",
            cwd=clone)
    _forge(site, bare, "refs/heads/accepted", clone)
    with pytest.raises(MissionError, match="not accepted yet"):
        settlement.settle(site.hub, mid)  # the very call a racing reconciler would make
    assert site.closure(mid) is None


def test_a_registry_key_swap_that_skipped_the_gate_never_signs(site: Site, tmp_path: Path) -> None:
    from aismm.core.actor import Actor
    from aismm.core.model import dump_yaml

    mid = site.create("T1")
    site.deliver(mid)
    reg = site.hub.registry_path
    clone = tmp_path / "registry"
    run_git("clone", "-q", str(reg), str(clone))
    agent_key = (site.hub.key_path(AGENT).with_suffix(".pub")).read_text().strip()
    doc = yaml.safe_load((clone / "actors" / f"{CLIENT}.yaml").read_text())
    doc["key"] = agent_key  # the agent's key now "belongs" to the client
    (clone / "actors" / f"{CLIENT}.yaml").write_text(dump_yaml(doc))
    run_git("commit", "-q", "-am", "swap", "--no-gpg-sign", cwd=clone)
    logged = run_git("-C", str(reg), "rev-parse", "main").stdout.strip()
    _forge(site, reg, "refs/heads/main", clone)

    # the agent accepts its own work "as the client", through the normal hooked path
    work = tmp_path / "accept"
    run_git("clone", "-q", str(site.hub.mission_path(mid)), str(work))
    run_git("checkout", "-q", "accepted", cwd=work)
    run_git("-c", "gpg.format=ssh", "-c", f"user.signingkey={site.hub.key_path(AGENT)}",
            "merge", "-q", "--no-ff", "-S", "-m", "Accept", f"origin/attempts/{AGENT}", cwd=work)
    push = run_git("push", "origin", "accepted", cwd=work, env={"AISMM_NOW": site.now()},
                   check=False)

    assert push.returncode != 0
    assert run_git("-C", str(reg), "rev-parse", "main").stdout.strip() == logged
    assert Actor.model_validate(yaml.safe_load(run_git(
        "-C", str(reg), "show", f"main:actors/{CLIENT}.yaml").stdout)).key != agent_key
    assert site.closure(mid) is None
    assert any(i.repo == "registry.git" for i in _incidents(site))


def test_a_rewind_to_an_earlier_approved_value_is_judged(queued: Site, tmp_path: Path) -> None:
    from aismm.services import settlement

    site = queued
    mid = site.create("T1")
    clone = _clone(site, mid, tmp_path)
    _commit(site, clone, site.now(), {"deliverable/findings.json": GOLDEN.read_bytes()})
    _push(site, clone)
    delivered = run_git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    worker.process(site.hub)  # DoD and review
    settlement.request(site.hub, mid, AGENT, "rework", "cite the lines")
    logged = site.refs(mid)[f"refs/heads/attempts/{AGENT}"]
    assert logged != delivered
    bare = site.hub.mission_path(mid)
    run_git("-C", str(bare), "update-ref", f"refs/heads/attempts/{AGENT}", delivered)

    result = site.cli("process")

    assert result.code == 0, result.err
    tip = site.refs(mid)[f"refs/heads/attempts/{AGENT}"]
    assert run_git("merge-base", "--is-ancestor", logged, tip, cwd=bare, check=False
                   ).returncode == 0  # put back: the rework request and verdicts stay
    assert any(i.found == delivered and i.restored == logged for i in _incidents(site))


@pytest.mark.parametrize("command", [("process",), ("tick",), ("reconcile",),
                                     ("mission", "list")])
def test_one_damaged_main_is_put_back_and_never_stops_the_hub(site: Site, tmp_path: Path,
                                                              command: tuple[str, ...]) -> None:
    damaged, healthy = site.create("T1"), site.create("T1")
    bare = site.hub.mission_path(damaged)
    clone = tmp_path / "damage"
    run_git("clone", "-q", str(bare), str(clone))
    (clone / "mission.yaml").write_text("garbage: [\n")
    run_git("commit", "-q", "-am", "break", "--no-gpg-sign", cwd=clone)
    main = site.refs(damaged)["refs/heads/main"]
    _forge(site, bare, "refs/heads/main", clone)

    result = site.cli(*command)

    assert result.code == 0, result.err
    assert site.refs(damaged)["refs/heads/main"] == main
    if command == ("mission", "list"):
        assert damaged in result.out and healthy in result.out


def test_a_forged_ref_is_not_laundered_by_a_push_on_top(site: Site, tmp_path: Path) -> None:
    mid = site.create("T1")
    bare = site.hub.mission_path(mid)
    logged = site.refs(mid)[f"refs/heads/attempts/{AGENT}"]
    clone = _clone(site, mid, tmp_path)
    (clone / "deliverable").mkdir()
    (clone / "deliverable" / "findings.json").write_bytes(GOLDEN.read_bytes())
    run_git("add", "-A", cwd=clone)
    run_git("commit", "-q", "--no-gpg-sign", "-m", "unsigned", cwd=clone)
    forged = _forge(site, bare, f"refs/heads/attempts/{AGENT}", clone)
    _commit(site, clone, site.now(), {"deliverable/notes.md": b"signed on top\n"})

    pushed = run_git("push", "origin", f"HEAD:refs/heads/attempts/{AGENT}", cwd=clone,
                     env={"AISMM_NOW": site.now()}, check=False)

    assert pushed.returncode != 0
    assert site.refs(mid)[f"refs/heads/attempts/{AGENT}"] == logged
    assert any(i.found == forged and i.restored == logged for i in _incidents(site))
