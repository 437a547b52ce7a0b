"""Mission state derived from the repository and the ledger, read through `mission status --json`.

The hubs run in daemon mode, so a delivery, a request or an acceptance waits in the outbox until
the test processes it: every intermediate state can be observed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aismm.core.model import dump_yaml
from aismm.core.signing import generate_key
from aismm.services import delivery, registrar, settlement, worker
from tests.settlekit import AGENT, CLIENT, START, UNIT_INPUTS, Site, make_site

KEYS = {"id", "state", "contract", "tier", "client", "price", "fee", "deadline", "agents", "mode",
        "attempts", "accepted", "escrow", "next", "now", "parent"}
ATTEMPT_KEYS = {"agent", "head", "deliverable_tree", "state", "dod", "quorum", "verdicts",
                "requests", "reworks", "open_request", "ruling", "failure"}
NEXT = {
    "assigned": "the assigned agents deliver under deliverable/ on attempts/<agent>",
    "in_review": "the platform and reviewers grade the delivery",
    "failed": "the agent delivers again (the DoD failed)",
    "rework": "the agent reworks the delivery as requested",
    "escalated": "the arbiter rules release or refund",
    "awaiting_acceptance": f"{CLIENT} accepts (aismm mission accept / git merge --no-ff -S) or "
                           "requests rework",
    "accepted": "the platform settles the escrow",
    "settled": "nothing: the mission is closed",
    "refunded": "nothing: the mission is closed",
    "expired": "`aismm tick` refunds the escrow (deadline passed)",
}
DOD_CHECKS = [{"name": "files", "status": "pass", "detail": "1 files"},
              {"name": "schema", "status": "pass", "detail": "all files validate"},
              {"name": "findings-anchored", "status": "pass", "detail": "exit 0"}]


@pytest.fixture()
def queued(settle_template: Path, tmp_path: Path) -> Site:
    return make_site(settle_template, tmp_path, processing="daemon")


def status(site: Site, mid: str, state: str) -> dict[str, Any]:
    """`aismm mission status MID --json`, checked for its shape, its state and its next step."""
    result = site.cli("mission", "status", mid, "--json")
    assert (result.code, result.err) == (0, ""), result
    data: dict[str, Any] = json.loads(result.out)
    assert set(data) == KEYS
    assert all(set(a) == ATTEMPT_KEYS for a in data["attempts"])
    assert (data["id"], data["state"], data["next"], data["now"]) == (
        mid, state, NEXT[state], site.now())
    assert data == site.status(mid)  # the CLI shows exactly the derived status
    return data


def tree(site: Site, mid: str, agent: str = AGENT) -> str:
    return site.git(mid, "rev-parse", f"attempts/{agent}:deliverable").stdout.strip()


def test_status_from_assignment_through_review_and_rework_to_settlement(queued: Site) -> None:
    site = queued
    mid = site.create("T1")
    main = site.refs(mid)["refs/heads/main"]

    data = status(site, mid, "assigned")
    assert {k: data[k] for k in KEYS - {"attempts", "next", "now", "id", "state"}} == {
        "contract": "contract.code_review@1.0.0", "tier": "T1", "client": CLIENT, "price": 400,
        "fee": 40, "deadline": "2026-01-04T00:00:00Z", "agents": [AGENT], "mode": "direct",
        "accepted": None, "escrow": {"state": "funded", "balance": 440}, "parent": None}
    assert data["attempts"] == [{
        "agent": AGENT, "head": main, "deliverable_tree": None, "state": "assigned", "dod": None,
        "quorum": {"have": [], "need": 1}, "verdicts": {}, "requests": [], "reworks": 0,
        "open_request": None, "ruling": None, "failure": None}]

    delivery.dispatch(site.hub, mid)  # delivered; the assessment waits in the outbox
    [attempt] = status(site, mid, "in_review")["attempts"]
    first = tree(site, mid)
    assert (attempt["state"], attempt["deliverable_tree"], attempt["dod"], attempt["verdicts"]) \
        == ("in_review", first, None, {})

    worker.process(site.hub)
    [attempt] = status(site, mid, "awaiting_acceptance")["attempts"]
    assert (attempt["state"], attempt["dod"], attempt["quorum"]) == (
        "awaiting_acceptance", "pass", {"have": ["ref-reviewer"], "need": 1})
    assert attempt["verdicts"] == {
        "platform": {"verdict": "pass", "score": 100, "current": True, "checks": DOD_CHECKS},
        "ref-reviewer": {"verdict": "pass", "score": 100, "current": True, "checks": []}}

    settlement.request(site.hub, mid, AGENT, "rework", "explain the findings")
    [attempt] = status(site, mid, "rework")["attempts"]
    assert (attempt["state"], attempt["requests"], attempt["reworks"], attempt["open_request"],
            attempt["deliverable_tree"]) == (
        "rework", ["requests/001-rework.yaml"], 1, "requests/001-rework.yaml", first)

    worker.process(site.hub)  # the agent reworks; the new delivery is assessed
    [attempt] = status(site, mid, "awaiting_acceptance")["attempts"]
    second = tree(site, mid)
    assert second != first
    assert (attempt["deliverable_tree"], attempt["reworks"], attempt["open_request"],
            attempt["dod"], attempt["quorum"]["have"]) == (second, 1, None, "pass",
                                                           ["ref-reviewer"])
    assert {who: v["current"] for who, v in attempt["verdicts"].items()} == {
        "platform": True, "ref-reviewer": True}

    accepted = site.cli("mission", "accept", mid, "--attempt", AGENT)
    merge = site.refs(mid)["refs/heads/accepted"]
    assert (accepted.code, accepted.out) == (
        0, f"{CLIENT} accepted attempts/{AGENT} with merge {merge[:12]}\n")
    data = status(site, mid, "accepted")
    assert (data["accepted"], data["attempts"][0]["state"], data["escrow"]) == (
        AGENT, "accepted", {"state": "funded", "balance": 440})

    assert site.cli("process").code == 0
    data = status(site, mid, "settled")
    closure = site.closure(mid)
    assert closure is not None
    assert data["escrow"] == {"state": "settled", "balance": 0, **closure.to_dict()}
    assert (data["accepted"], data["attempts"][0]["state"], closure.cause, closure.provider,
            closure.fee) == (AGENT, "accepted", merge, 400, 40)


def test_status_of_a_failed_delivery_escalated_and_refunded(queued: Site) -> None:
    site = queued
    agent = "sloppy-coder"
    mid = site.create("T0", agents=(agent,), contract="contract.unit_tests", inputs=UNIT_INPUTS)
    site.deliver(mid)

    [attempt] = status(site, mid, "failed")["attempts"]
    assert (attempt["state"], attempt["dod"], attempt["quorum"]["have"]) == ("failed", "fail", [])
    assert {who: v["verdict"] for who, v in attempt["verdicts"].items()} == {
        "platform": "fail", "ref-reviewer": "fail"}

    settlement.request(site.hub, mid, agent, "rework", "make the tests run")
    worker.process(site.hub)  # the agent re-runs (and fails again)
    settlement.request(site.hub, mid, agent, "escalation", "the tests do not run")
    [attempt] = status(site, mid, "escalated")["attempts"]
    assert (attempt["state"], attempt["open_request"], attempt["ruling"]) == (
        "escalated", "requests/002-escalation.yaml", None)

    worker.process(site.hub)  # the hosted arbiter rules
    data = status(site, mid, "refunded")
    [attempt] = data["attempts"]
    assert (attempt["state"], attempt["ruling"], data["accepted"]) == ("failed", "refund", None)
    escrow = data["escrow"]
    assert (escrow["state"], escrow["balance"], escrow["provider"], escrow["fee"],
            escrow["client_refund"], escrow["provider_owner"]) == ("refunded", 0, 0, 2, 100, None)
    assert escrow["cause"] == f"arbiter:{site.refs(mid)['refs/heads/main']}"


def test_status_at_the_deadline_expired_unless_the_dod_passed_in_time(queued: Site) -> None:
    site = queued
    # the late mission's agent is external and never pushes (a hosted one would be run by the
    # hub as soon as the mission's creation is processed)
    registrar.add_actor(site.hub, "slow", ["specialist"], "slowco", generate_key().public_line,
                        False)
    listed = {"schema_version": 1, "agent": "slow", "n": 1, "status": "listed", "badge": "silver",
              "quality": 85.0, "p50_seconds": 1.0, "cost": 400, "reasons": [], "tasks": [],
              "at": "2026-01-01T00:00:00Z"}
    registrar.commit_files(site.hub, {"assessments/slow/0001.yaml": dump_yaml(listed).encode()},
                           "Assess slow: listed (test fixture)\n", site.hub.config.platform)
    late = site.create("T1", agents=("slow",), price=400)
    on_time = site.create("T1")
    site.advance("P2D")
    site.deliver(on_time)
    site.advance("P1D")

    data = status(site, late, "expired")
    assert (data["escrow"], data["attempts"][0]["state"]) == (
        {"state": "funded", "balance": 440}, "assigned")
    assert status(site, on_time, "awaiting_acceptance")["now"] == "2026-01-04T00:00:00Z"

    ticked = site.cli("tick")
    assert (ticked.code, ticked.out) == (
        0, "escrow refunded (deadline): 400 back to carol, 40 fee kept by the platform\n")
    data = status(site, late, "refunded")
    assert (data["escrow"]["state"], data["escrow"]["client_refund"], data["escrow"]["fee"]) == (
        "refunded", 400, 40)
    status(site, on_time, "awaiting_acceptance")

    listed = site.cli("mission", "list", "--json")
    rows = {row["id"]: row["state"] for row in json.loads(listed.out)}
    assert rows == {late: "refunded", on_time: "awaiting_acceptance"}
    only = json.loads(site.cli("mission", "list", "--state", "refunded", "--json").out)
    assert [row["id"] for row in only] == [late]


def test_status_in_review_while_the_quorum_is_missing(queued: Site) -> None:
    site = queued
    mid = site.create("T1", reviewers=("vera",))
    site.deliver(mid)

    data = status(site, mid, "in_review")
    [attempt] = data["attempts"]
    assert (attempt["state"], attempt["dod"], attempt["quorum"], list(attempt["verdicts"])) == (
        "in_review", "pass", {"have": [], "need": 1}, ["platform"])
    assert data["now"] == START
