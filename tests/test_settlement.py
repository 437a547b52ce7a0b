"""Settlement, refunds, timers, the reconciler, crashes and races, against real hubs.

Every test owns a copy of a ready hub (see ``settlekit``) and a fixed clock; the CLI runs as real
subprocesses at that clock's time (``AISMM_NOW``). Prices default to the agent's ask:
``ref-code-reviewer`` 400 tokens, ``sloppy-coder`` 100. Fees: T0 2%, T1 10%, T2 25%.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from aismm.services import settlement
from tests.settlekit import (
    AGENT,
    CLIENT,
    SEED,
    SILENT,
    UNIT_INPUTS,
    Result,
    Site,
    failing_findings,
    make_site,
)

PRICE = 400
FEE = {"T0": 8, "T1": 40, "T2": 100}
FEE_BP = {"T0": 200, "T1": 1000, "T2": 2500}
SLOPPY = "sloppy-coder"
PLATFORM_SIGNER = "platform@aismm.invalid"
KILLED = -signal.SIGKILL


@pytest.fixture()
def site(settle_template: Path, tmp_path: Path) -> Site:
    return make_site(settle_template, tmp_path)


@pytest.fixture()
def queued(settle_template: Path, tmp_path: Path) -> Site:
    """A hub in daemon mode: pushes and requests wait in the outbox until processed."""
    return make_site(settle_template, tmp_path, processing="daemon")


# -- helpers ------------------------------------------------------------------------------------


def delivered(site: Site, tier: str = "T1") -> str:
    """A mission whose hosted agent delivered and passed the DoD and the review quorum."""
    mid = site.create(tier)
    site.deliver(mid)
    attempt = site.status(mid)["attempts"][0]
    assert (attempt["state"], attempt["dod"], attempt["quorum"]["have"]) == (
        "awaiting_acceptance", "pass", ["ref-reviewer"])
    return mid


def sloppy_failed(site: Site) -> str:
    """A T0 unit-tests mission whose unlisted, careless agent delivered work failing the DoD."""
    mid = site.create("T0", agents=(SLOPPY,), contract="contract.unit_tests", inputs=UNIT_INPUTS)
    site.deliver(mid)
    attempt = site.status(mid)["attempts"][0]
    assert (attempt["state"], attempt["dod"]) == ("failed", "fail")
    return mid


def settled_balances(tier: str) -> dict[str, int]:
    return {f"client:{CLIENT}": SEED - PRICE - FEE[tier], "provider:acme": PRICE,
            "platform:fees": FEE[tier], "world": -SEED}


def without_zero(balances: dict[str, int]) -> dict[str, int]:
    return {a: b for a, b in balances.items() if b}


def settled_line(tier: str, merge: str) -> str:
    return (f"escrow settled: {PRICE} to provider:acme, {FEE[tier]} fee to platform:fees "
            f"({FEE_BP[tier] / 100:g}% {tier}); tag settled on {merge[:12]}")


def assert_settled_once(site: Site, mid: str, tier: str, signer: str) -> str:
    """Exactly one settlement of the mission, tagged once, matching the ledger; the merge id."""
    refs = site.refs(mid)
    merge = refs["refs/heads/accepted"]
    assert site.signed_by(mid, "commit", merge) == signer
    assert [r for r in refs if r.startswith("refs/tags/")] == ["refs/tags/settled"]
    assert site.git(mid, "rev-parse", "settled^{commit}").stdout.strip() == merge
    assert site.git(mid, "cat-file", "-t", "settled").stdout.strip() == "tag"
    assert site.signed_by(mid, "tag", "settled") == PLATFORM_SIGNER
    closure = site.closure(mid)
    assert closure is not None
    assert (closure.kind, closure.cause, closure.client, closure.provider_owner,
            closure.provider, closure.fee, closure.client_refund) == (
        "settled", merge, CLIENT, "acme", PRICE, FEE[tier], 0)
    assert site.closing_transfers(mid) == [("platform:fees", "settle", FEE[tier]),
                                           ("provider:acme", "settle", PRICE)]
    assert site.tag_body(mid, "settled") == {
        "schema_version": 1, "mission": mid, "tier": tier, "fee_bp": FEE_BP[tier],
        "acceptance": merge, "agent": AGENT, **closure.to_dict()}
    assert without_zero(site.balances()) == settled_balances(tier)
    assert site.balance(f"escrow:{mid}") == 0
    assert site.check() == []
    runs = site.executions(mid)
    assert [(r["agent"], r["outcome"], r["cost"], r["commits"]["accepted"]) for r in runs] == [
        (AGENT, "accepted", PRICE, merge)]
    status = site.status(mid)
    assert (status["state"], status["accepted"], status["escrow"]["state"]) == (
        "settled", AGENT, "settled")
    return merge


def assert_refunded_once(site: Site, mid: str, reason: str, kept: int, total: int) -> None:
    """Exactly one refund, tagged on main, matching the ledger."""
    refs = site.refs(mid)
    main = refs["refs/heads/main"]
    assert refs["refs/heads/accepted"] == main
    assert [r for r in refs if r.startswith("refs/tags/")] == ["refs/tags/refunded"]
    assert site.git(mid, "rev-parse", "refunded^{commit}").stdout.strip() == main
    assert site.signed_by(mid, "tag", "refunded") == PLATFORM_SIGNER
    closure = site.closure(mid)
    assert closure is not None
    assert (closure.kind, closure.cause, closure.client, closure.provider_owner,
            closure.provider, closure.fee, closure.client_refund) == (
        "refunded", f"{reason}:{main}", CLIENT, None, 0, kept, total - kept)
    expected = [(f"client:{CLIENT}", "refund", total - kept)]
    if kept:
        expected.append(("platform:fees", "refund", kept))
    assert site.closing_transfers(mid) == expected
    tier = site.status(mid)["tier"]
    assert site.tag_body(mid, "refunded") == {"schema_version": 1, "mission": mid, "tier": tier,
                                              "reason": reason, **closure.to_dict()}
    assert site.balance(f"escrow:{mid}") == 0
    assert site.check() == []
    status = site.status(mid)
    assert (status["state"], status["accepted"], status["escrow"]["state"]) == (
        "refunded", None, "refunded")
    closing = [(r["outcome"], r["cost"]) for r in site.executions(mid) if r["outcome"] != "failed"]
    assert closing == [("refunded", 0)]  # (a hosted re-run that delivered nothing is "failed")


def refused(result: Result, code: int, *lines: str) -> None:
    """A clean refusal: the exit code, exactly these stderr lines, no output, no traceback."""
    assert (result.code, result.lines, result.out) == (code, list(lines), ""), result


def one_line_error(result: Result) -> str:
    """The single ``aismm: ...`` line of a failed run (exit 1 or 2, never a traceback)."""
    assert result.code in (1, 2) and "Traceback" not in result.err, result
    assert len(result.lines) == 1 and result.lines[0].startswith("aismm: "), result
    return result.lines[0]


# -- 1. happy path ------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["T0", "T1", "T2"])
def test_accepting_a_passing_delivery_settles_once_at_each_tier(site: Site, tier: str) -> None:
    mid = site.create(tier)
    assert without_zero(site.balances()) == {
        f"client:{CLIENT}": SEED - PRICE - FEE[tier], f"escrow:{mid}": PRICE + FEE[tier],
        "world": -SEED}
    site.deliver(mid)
    assert site.status(mid)["state"] == "awaiting_acceptance"

    result = site.cli("mission", "accept", mid, "--attempt", AGENT)

    merge = site.refs(mid)["refs/heads/accepted"]
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        f"{CLIENT} accepted attempts/{AGENT} with merge {merge[:12]}", settled_line(tier, merge)]
    assert_settled_once(site, mid, tier, signer=f"{CLIENT}@aismm.invalid")
    runs = site.executions(mid)
    assert (runs[0]["agent_owner"], runs[0]["client"], runs[0]["quality"],
            runs[0]["reworks"]) == ("acme", CLIENT, 100.0, 0)
    if tier == "T1":
        assert site.cli("ledger", "check") == Result(
            0, "ledger check: clean (sum of balances 0)\n", "")
        again = site.state(mid)
        refused(site.cli("mission", "accept", mid, "--attempt", AGENT), 1,
                "aismm: refs/heads/accepted: ref: this mission is already accepted; nothing to do")
        assert site.state(mid) == again


def test_a_contest_pays_the_accepted_attempt_and_records_the_other_not_selected(
        site: Site) -> None:
    mid = site.create("T0", agents=("ref-test-writer", SLOPPY), contract="contract.unit_tests",
                      inputs=UNIT_INPUTS, mode="contest")  # T0: unlisted agents may compete
    site.deliver(mid)
    assert (site.status(mid)["mode"], site.status(mid)["price"]) == ("contest", 500)  # top ask
    states = {a["agent"]: a["state"] for a in site.status(mid)["attempts"]}
    assert states == {"ref-test-writer": "awaiting_acceptance", SLOPPY: "failed"}

    result = site.cli("mission", "accept", mid, "--attempt", "ref-test-writer")

    merge = site.refs(mid)["refs/heads/accepted"]
    paid = "escrow settled: 500 to provider:acme, 10 fee to platform:fees (2% T0); tag settled on"
    assert (result.code, result.out.splitlines()[-1]) == (0, f"{paid} {merge[:12]}")
    assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED - 510,
                                             "provider:acme": 500, "platform:fees": 10,
                                             "world": -SEED}
    assert site.tag_body(mid, "settled")["agent"] == "ref-test-writer"
    status = site.status(mid)
    assert (status["state"], status["accepted"]) == ("settled", "ref-test-writer")
    assert {a["agent"]: a["state"] for a in status["attempts"]} == {
        "ref-test-writer": "accepted", SLOPPY: "not_selected"}
    assert sorted((r["agent"], r["outcome"], r["cost"]) for r in site.executions(mid)) == [
        ("ref-test-writer", "accepted", 500), (SLOPPY, "not_selected", 0)]
    assert site.check() == []


# -- 2. refunds ---------------------------------------------------------------------------------


def test_cancel_before_delivery_returns_everything_fee_included(site: Site) -> None:
    mid = site.create("T1")

    result = site.cli("mission", "cancel", mid)

    assert result == Result(0, f"escrow refunded (cancel): {PRICE + 40} back to {CLIENT}\n", "")
    assert_refunded_once(site, mid, "cancel", kept=0, total=PRICE + 40)
    assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED, "world": -SEED}
    before = site.state(mid)
    refused(site.cli("mission", "accept", mid, "--attempt", AGENT), 1,
            "aismm: refs/heads/accepted: ref: this mission was refunded; it can no longer be "
            "accepted")
    refused(site.cli("mission", "escalate", mid, "--attempt", AGENT, "--reason", "x"), 2,
            f"aismm: --attempt {AGENT}: nothing delivered yet; wait for a delivery")
    assert site.state(mid) == before


def test_cancel_after_delivery_is_refused_and_changes_nothing(site: Site) -> None:
    mid = delivered(site)
    before, balances = site.state(mid), site.balances()

    result = site.cli("mission", "cancel", mid)

    refused(result, 2, f"aismm: {mid}: refs/heads/attempts/{AGENT} has delivered; cancel only "
            "before any delivery (escalate instead)")
    assert (site.state(mid), site.balances(), site.closure(mid)) == (before, balances, None)


@pytest.mark.parametrize("tier,kept", [("T0", 8), ("T1", 40), ("T2", 0)])
def test_deadline_refunds_price_and_keeps_the_fee_except_at_t2(site: Site, tier: str,
                                                               kept: int) -> None:
    mid = site.create(tier, agents=(SILENT,), price=PRICE)  # nobody delivers
    total = PRICE + FEE[tier]
    site.advance("P2DT23H59M59S")
    before = site.state(mid)
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
    assert site.state(mid) == before

    site.advance("PT1S")
    assert site.status(mid)["state"] == "expired"
    result = site.cli("tick")

    tail = f", {kept} fee kept by the platform" if kept else ""
    assert result == Result(0, f"escrow refunded (deadline): {total - kept} back to {CLIENT}"
                            f"{tail}\n", "")
    assert_refunded_once(site, mid, "deadline", kept=kept, total=total)
    assert without_zero(site.balances()) == without_zero({
        f"client:{CLIENT}": SEED - kept, "platform:fees": kept, "world": -SEED})
    if tier == "T1":
        after = site.state(mid)
        assert site.cli("tick") == Result(0, "nothing to do\n", "")
        refused(site.cli("mission", "accept", mid, "--attempt", SILENT), 1,
                "aismm: refs/heads/accepted: ref: this mission was refunded; it can no longer be "
                "accepted")
        assert site.state(mid) == after


def test_arbiter_refund_after_escalating_a_failing_delivery(site: Site) -> None:
    mid = sloppy_failed(site)
    refused(site.cli("mission", "escalate", mid, "--attempt", SLOPPY, "--reason", "tests fail"),
            2, f"aismm: --attempt {SLOPPY}: the contract allows escalation after 1 rework "
            "request(s), 0 so far; ask for a rework first (`aismm mission rework`)")
    assert site.cli("mission", "rework", mid, "--attempt", SLOPPY, "--reason", "fix").code in (0, 1)

    result = site.cli("mission", "escalate", mid, "--attempt", SLOPPY, "--reason", "tests fail")

    head = site.refs(mid)[f"refs/heads/attempts/{SLOPPY}"]
    request = site.git(mid, "rev-parse", f"{head}~1").stdout.strip()
    assert result == Result(0, "\n".join([
        f"{CLIENT} filed requests/002-escalation.yaml on attempts/{SLOPPY} ({request[:12]})",
        f"arbiter arbiter ruled REFUND on attempts/{SLOPPY}",
        f"escrow refunded (arbiter): 100 back to {CLIENT}, 2 fee kept by the platform"]) + "\n",
        "")
    assert site.signed_by(mid, "commit", head) == "arbiter@aismm.invalid"
    ruling = yaml.safe_load(site.git(mid, "show", f"{head}:verdicts/arbiter.yaml").stdout)
    assert ruling["verdict"] == "refund" and "client's reason: tests fail" in ruling["comments"]
    assert_refunded_once(site, mid, "arbiter", kept=2, total=102)
    assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED - 2, "platform:fees": 2,
                                             "world": -SEED}
    before = site.state(mid)
    refused(site.cli("mission", "accept", mid, "--attempt", SLOPPY), 1,
            "aismm: refs/heads/accepted: ref: this mission was refunded; it can no longer be "
            "accepted")
    assert site.state(mid) == before


def test_arbiter_release_on_a_passing_delivery_settles(site: Site) -> None:
    mid = delivered(site, "T1")
    site.cli("mission", "rework", mid, "--attempt", AGENT, "--reason", "say more")

    result = site.cli("mission", "escalate", mid, "--attempt", AGENT, "--reason", "I disagree")

    merge = site.refs(mid)["refs/heads/accepted"]
    ruling = site.git(mid, "rev-parse", f"{merge}^2").stdout.strip()
    assert result.code == 0 and result.err == ""
    assert result.out.splitlines()[1:] == [
        f"arbiter arbiter ruled RELEASE on attempts/{AGENT}",
        f"platform accepted attempts/{AGENT} with merge {merge[:12]}",
        settled_line("T1", merge)]
    assert site.signed_by(mid, "commit", ruling) == "arbiter@aismm.invalid"
    assert_settled_once(site, mid, "T1", signer=PLATFORM_SIGNER)


# -- 3. auto-acceptance -------------------------------------------------------------------------


def test_tick_auto_accepts_when_the_client_stays_silent_for_the_window(site: Site) -> None:
    mid = delivered(site, "T1")
    site.advance("P1DT23H59M59S")
    before = site.state(mid)
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
    assert site.state(mid) == before

    site.advance("PT1S")
    result = site.cli("tick")

    merge = site.refs(mid)["refs/heads/accepted"]
    assert result == Result(0, f"platform accepted attempts/{AGENT} with merge {merge[:12]}\n"
                            f"{settled_line('T1', merge)}\n", "")
    assert_settled_once(site, mid, "T1", signer=PLATFORM_SIGNER)
    after = site.state(mid)
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
    assert site.state(mid) == after


def test_tick_never_auto_accepts_a_failed_delivery(site: Site) -> None:
    mid = site.create("T1")
    push = site.push_as_agent(mid, AGENT, {"deliverable/findings.json": failing_findings()},
                              site.root.parent)
    assert push.returncode == 0, push.stderr
    assert site.status(mid)["state"] == "failed"
    site.advance("P2DT12H")
    before = site.state(mid)
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
    assert site.state(mid) == before


def test_a_passing_delivery_before_the_deadline_is_not_refunded_at_the_deadline(
        site: Site) -> None:
    mid = site.create("T1")
    site.advance("P2D")
    site.deliver(mid)
    site.advance("P1D")  # the deadline; the client has been silent for one day of two
    before = site.state(mid)
    assert site.status(mid)["state"] == "awaiting_acceptance"
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
    assert site.state(mid) == before

    site.advance("P1D")
    result = site.cli("tick")

    merge = site.refs(mid)["refs/heads/accepted"]
    assert result.out.splitlines() == [
        f"platform accepted attempts/{AGENT} with merge {merge[:12]}", settled_line("T1", merge)]
    assert_settled_once(site, mid, "T1", signer=PLATFORM_SIGNER)


# -- 4. crash matrix ----------------------------------------------------------------------------

DIE_IN_LEDGER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from aismm.services import client, settlement
    from aismm.infra.hub import Hub
    from aismm.infra.ledger import Ledger

    post = Ledger._post

    def post_then_die(self, specs, *args, **kwargs):
        posted = post(self, specs, *args, **kwargs)
        if any(s.action in ("settle", "refund") for s in specs):
            print(f"in transaction: {self._conn.in_transaction}, posted {len(specs)}",
                  flush=True)
            os.kill(os.getpid(), 9)  # inside the closing transaction, before its COMMIT
        return posted

    Ledger._post = post_then_die
    hub = Hub(Path(sys.argv[1]))
    if sys.argv[2] == "accept":
        client.accept(hub, sys.argv[3], sys.argv[4])
    else:
        settlement.cancel(hub, sys.argv[3])
""")


def die_in_ledger(site: Site, *args: str) -> Result:
    """Run an acceptance or a cancel that SIGKILLs itself inside the closing transaction."""
    proc = subprocess.run([sys.executable, "-c", DIE_IN_LEDGER, str(site.root), *args],
                          capture_output=True, text=True, env=site.cli_env(), timeout=120,
                          check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("crash", ["after-merge", "in-ledger", "after-ledger"])
def test_a_killed_acceptance_is_settled_exactly_once_by_the_reconciler(site: Site,
                                                                        crash: str) -> None:
    mid = delivered(site, "T1")
    funded = site.balances()

    if crash == "in-ledger":
        result = die_in_ledger(site, "accept", mid, AGENT)
        assert result.out == "in transaction: True, posted 2\n"
    else:
        result = site.cli("mission", "accept", mid, "--attempt", AGENT, AISMM_CRASH_AT=crash)
        assert result.out == ""
    assert result.code == KILLED, result.err

    refs = site.refs(mid)
    merge = refs["refs/heads/accepted"]
    assert merge != refs["refs/heads/main"] and "refs/tags/settled" not in refs
    if crash == "after-ledger":
        assert site.closure(mid) is not None
        assert without_zero(site.balances()) == settled_balances("T1")
    else:  # the merge landed, the ledger transaction never committed (or never began)
        assert (site.closure(mid), site.balances(), site.closing_transfers(mid)) == (
            None, funded, [])
    assert site.check() == []

    result = site.cli("reconcile")

    assert result == Result(0, settled_line("T1", merge) + "\n", "")
    assert site.cli("process") == Result(0, "nothing to do\n", "")
    assert_settled_once(site, mid, "T1", signer=f"{CLIENT}@aismm.invalid")
    assert site.cli("ledger", "check") == Result(
        0, "ledger check: clean (sum of balances 0)\n", "")
    settled = site.state(mid)
    assert site.cli("reconcile") == Result(
        0, "reconcile: nothing to finish; tags and ledger agree\n", "")
    assert site.state(mid) == settled


def test_a_cancel_killed_after_the_ledger_is_tagged_by_the_reconciler(site: Site) -> None:
    mid = site.create("T1")

    result = site.cli("mission", "cancel", mid, AISMM_CRASH_AT="after-ledger")

    assert result.code == KILLED
    assert "refs/tags/refunded" not in site.refs(mid)
    assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED, "world": -SEED}
    assert site.cli("reconcile") == Result(
        0, f"escrow refunded (cancel): {PRICE + 40} back to {CLIENT}\n", "")
    assert_refunded_once(site, mid, "cancel", kept=0, total=PRICE + 40)
    refunded = site.state(mid)
    assert site.cli("reconcile") == Result(
        0, "reconcile: nothing to finish; tags and ledger agree\n", "")
    assert site.state(mid) == refunded


def test_a_cancel_killed_inside_the_ledger_leaves_the_escrow_funded(site: Site) -> None:
    mid = site.create("T1")
    before = site.state(mid)

    result = die_in_ledger(site, "cancel", mid)

    assert (result.code, result.out) == (KILLED, "in transaction: True, posted 1\n")
    assert site.state(mid) == before  # rolled back: no transfer, no closure, no tag
    assert site.check() == []
    assert site.cli("reconcile") == Result(
        0, "reconcile: nothing to finish; tags and ledger agree\n", "")
    assert site.state(mid) == before
    assert site.cli("mission", "cancel", mid).code == 0
    assert_refunded_once(site, mid, "cancel", kept=0, total=PRICE + 40)


# -- 5. races -----------------------------------------------------------------------------------


def together(site: Site, *commands: tuple[str, ...]) -> list[Result]:
    """Start every command at once; wait for all of them."""
    procs = [site.popen(*command) for command in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append(Result(proc.returncode, out, err))
    return results


def test_two_acceptances_at_once_settle_once(site: Site) -> None:
    mid = delivered(site, "T1")
    main = site.refs(mid)["refs/heads/main"]

    results = together(site, *[("mission", "accept", mid, "--attempt", AGENT)] * 2)

    merge = site.refs(mid)["refs/heads/accepted"]
    winner, loser = sorted(results, key=lambda r: r.code)
    assert (winner.code, winner.err) == (0, "")
    assert winner.out.splitlines()[-1] == settled_line("T1", merge)
    assert one_line_error(loser) in (
        "aismm: refs/heads/accepted: ref: this mission is already accepted; nothing to do",
        (f"aismm: refs/heads/accepted: moved to {merge} while we expected {main}; re-read the "
         "repository and retry"))
    assert loser.code == 1
    assert_settled_once(site, mid, "T1", signer=f"{CLIENT}@aismm.invalid")


def test_two_reconcilers_finish_one_crashed_acceptance_once(site: Site) -> None:
    mid = delivered(site, "T1")
    crashed = site.cli("mission", "accept", mid, "--attempt", AGENT,
                       AISMM_CRASH_AT="after-merge")
    assert crashed.code == KILLED

    results = together(site, ("reconcile",), ("process",))

    assert [r.code for r in results] == [0, 0], results
    assert_settled_once(site, mid, "T1", signer=f"{CLIENT}@aismm.invalid")
    assert site.cli("reconcile").out == "reconcile: nothing to finish; tags and ledger agree\n"


def closed_one_way(site: Site, mid: str, total: int, fee: int) -> str:
    """The mission closed exactly once (settled or refunded), consistently; the kind."""
    closure = site.closure(mid)
    assert closure is not None
    tags = [r for r in site.refs(mid) if r.startswith("refs/tags/")]
    assert tags == [f"refs/tags/{closure.kind}"]
    assert closure.total == total
    assert site.balance(f"escrow:{mid}") == 0
    assert site.check() == []
    assert site.cli("reconcile") == Result(
        0, "reconcile: nothing to finish; tags and ledger agree\n", "")
    assert site.status(mid)["state"] == closure.kind
    if closure.kind == "refunded":
        assert (closure.cause.split(":")[0], closure.client_refund) in (
            ("deadline", total - fee), ("cancel", total))
    else:
        assert (closure.provider, closure.fee) == (total - fee, fee)
    return closure.kind


def test_acceptance_racing_the_deadline_refund_closes_once(site: Site) -> None:
    mid = sloppy_failed(site)  # T0: the client may accept even a failing delivery
    site.advance("P3D")

    accept, tick = together(site, ("mission", "accept", mid, "--attempt", SLOPPY), ("tick",))

    kind = closed_one_way(site, mid, total=102, fee=2)
    for result in (accept, tick):
        if result.code != 0:
            one_line_error(result)
    if kind == "settled":
        assert accept.code == 0
        assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED - 102,
                                                 "provider:cheapo": 100, "platform:fees": 2,
                                                 "world": -SEED}
    else:
        assert tick.code == 0 and accept.code == 1
        assert without_zero(site.balances()) == {f"client:{CLIENT}": SEED - 2,
                                                 "platform:fees": 2, "world": -SEED}


def test_cancel_racing_the_deadline_refund_closes_once(site: Site) -> None:
    mid = site.create("T1", agents=(SILENT,), price=PRICE)  # nobody delivers
    site.advance("P3D")

    cancel, tick = together(site, ("mission", "cancel", mid), ("tick",))

    closed_one_way(site, mid, total=PRICE + 40, fee=40)
    closure = site.closure(mid)
    assert closure is not None
    winner, loser = (cancel, tick) if closure.cause.startswith("cancel:") else (tick, cancel)
    assert winner.code == 0
    if loser.code != 0:
        assert one_line_error(loser) == (
            f"aismm: escrow:{mid}: already refunded by {closure.cause}; re-read the mission, "
            "its escrow is closed")
    else:  # the tick came second and found the mission already refunded
        assert loser is tick and tick.out == "nothing to do\n"


# -- 6. bad input from the client ---------------------------------------------------------------


def test_unknown_mission_and_wrong_attempt_are_bad_input(site: Site) -> None:
    mid = delivered(site)
    before = site.state(mid)
    for args in (("mission", "accept", "code-review-00000000", "--attempt", AGENT),
                 ("mission", "cancel", "code-review-00000000"),
                 ("mission", "status", "code-review-00000000", "--json")):
        refused(site.cli(*args), 2, "aismm: code-review-00000000: no such mission; see "
                "`aismm mission list`")
    for verb in ("accept", "rework", "escalate"):
        extra = () if verb == "accept" else ("--reason", "why")
        refused(site.cli("mission", verb, mid, "--attempt", "ref-test-writer", *extra), 2,
                "aismm: --attempt ref-test-writer: no such attempt; see `aismm mission status`")
    assert site.state(mid) == before


def test_escalation_and_rework_on_an_undelivered_attempt_are_refused(site: Site) -> None:
    mid = site.create("T1")
    before = site.state(mid)
    for verb in ("escalate", "rework"):
        refused(site.cli("mission", verb, mid, "--attempt", AGENT, "--reason", "why"), 2,
                f"aismm: --attempt {AGENT}: nothing delivered yet; wait for a delivery")
    refused(site.cli("mission", "accept", mid, "--attempt", AGENT), 1,
            f"aismm: refs/heads/accepted: refs/heads/attempts/{AGENT}: nothing has been "
            "delivered; wait for a delivery")
    assert site.state(mid) == before


def test_rework_beyond_max_rework_is_refused(queued: Site) -> None:
    mid = delivered(queued)
    for n in range(1, 4):
        lines = settlement.request(queued.hub, mid, AGENT, "rework", f"round {n}")
        assert lines[0].startswith(f"aismm: {CLIENT} filed requests/00{n}-rework.yaml")
    before = queued.state(mid)

    result = queued.cli("mission", "rework", mid, "--attempt", AGENT, "--reason", "again")

    refused(result, 2, f"aismm: --attempt {AGENT}: max_rework 3 reached; accept or escalate "
            "instead")
    assert queued.state(mid) == before


def test_acceptance_of_a_delivery_failing_the_dod_is_refused_at_t1(site: Site) -> None:
    mid = site.create("T1")
    push = site.push_as_agent(mid, AGENT, {"deliverable/findings.json": failing_findings()},
                              site.root.parent)
    assert push.returncode == 0, push.stderr
    attempt = site.status(mid)["attempts"][0]
    assert (attempt["state"], attempt["dod"], attempt["quorum"]["have"]) == ("failed", "fail", [])
    checks = {c["name"]: c["status"] for c in attempt["verdicts"]["platform"]["checks"]}
    assert checks == {"files": "pass", "schema": "pass", "findings-anchored": "fail"}
    before = site.state(mid)

    result = site.cli("mission", "accept", mid, "--attempt", AGENT)

    where = f"aismm: refs/heads/accepted: refs/heads/attempts/{AGENT}"
    refused(result, 1,
            f"{where}: the platform DoD verdict does not pass on the current deliverable (T1); "
            "wait for verdicts or request rework",
            f"{where}: review quorum not met (0 of 1 independent passing verdicts on the current "
            "deliverable); wait for reviewers or request rework")
    assert site.state(mid) == before


def test_acceptance_without_the_review_quorum_is_refused_at_t1(site: Site) -> None:
    mid = site.create("T1", reviewers=("vera",))
    assert site.deliver(mid)[-1] == "aismm: reviewer vera is external; it pushes " \
        "verdicts/vera.yaml"
    attempt = site.status(mid)["attempts"][0]
    assert (attempt["state"], attempt["dod"], attempt["quorum"]) == (
        "in_review", "pass", {"have": [], "need": 1})
    before = site.state(mid)

    result = site.cli("mission", "accept", mid, "--attempt", AGENT)

    refused(result, 1, f"aismm: refs/heads/accepted: refs/heads/attempts/{AGENT}: review quorum "
            "not met (0 of 1 independent passing verdicts on the current deliverable); wait for "
            "reviewers or request rework")
    assert site.state(mid) == before


def test_requests_after_closure_are_refused(site: Site) -> None:
    mid = delivered(site, "T0")
    assert site.cli("mission", "accept", mid, "--attempt", AGENT).code == 0
    before = site.state(mid)
    refused(site.cli("mission", "rework", mid, "--attempt", AGENT, "--reason", "more"), 2,
            f"aismm: {mid}: already closed; nothing to rework")
    refused(site.cli("mission", "escalate", mid, "--attempt", AGENT, "--reason", "late"), 2,
            f"aismm: {mid}: already closed; nothing to escalate")
    refused(site.cli("mission", "cancel", mid), 2,
            f"aismm: {mid}: refs/heads/attempts/{AGENT} has delivered; cancel only before any "
            "delivery (escalate instead)")
    assert site.state(mid) == before


def test_a_refund_killed_after_the_ledger_survives_a_late_acceptance(site: Site) -> None:
    mid = sloppy_failed(site)
    site.advance("P3D")
    assert site.cli("tick", AISMM_CRASH_AT="after-ledger").code == KILLED  # refunded, untagged
    closure = site.closure(mid)
    assert closure is not None and closure.kind == "refunded"

    late = site.cli("mission", "accept", mid, "--attempt", SLOPPY)  # no tag yet, ledger knows

    assert site.refs(mid)["refs/heads/accepted"] == site.refs(mid)["refs/heads/main"]
    assert one_line_error(late) == ("aismm: refs/heads/accepted: ref: this mission was refunded; "
                                    "it can no longer be accepted")
    assert site.cli("reconcile") == Result(
        0, f"escrow refunded (deadline): 100 back to {CLIENT}, 2 fee kept by the platform\n", "")
    assert closed_one_way(site, mid, total=102, fee=2) == "refunded"
    assert site.cli("tick") == Result(0, "nothing to do\n", "")
