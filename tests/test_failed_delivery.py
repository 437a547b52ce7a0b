"""A failed hosted delivery shows (issue 10, item 8), and agent text reaches no terminal raw
(item 7b).

One real hub for the module, with hosted agents owned by ``mallory`` that run real Python
(``python -c``) in the sandbox: ``noisy`` exits 3 with terminal escape sequences on stderr,
``refused`` delivers a file whose name holds escape sequences (the gate refuses it), ``flaky``
fails like ``noisy`` until its provider republishes it as one that delivers the golden findings,
and ``grumpy`` is a hosted reviewer that always crashes with escape sequences. Everything goes
through the ``aismm`` CLI in-process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aismm.core.clock import FixedClock
from aismm.core.model import dump_yaml
from aismm.core.safepath import printable
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import market, mission, registrar
from aismm.services.hubs import init_hub
from tests import clikit
from tests.clikit import Result

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
START = "2026-01-01T00:00:00Z"

# What a hostile agent writes to stderr: an OSC window title, an OSC 52 clipboard write, CSI
# colour and clear-screen, a bare carriage return, a bidi override, C1 CSI, and a newline.
NASTY = ("\x1b]0;pwned title\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[31mred\x1b[0m\x1b[2J"
         "\rOVERWRITTEN \u202eevil\u202c \x9b31m second line\nthird line")
RAW = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


def crash(code: int) -> str:
    return f"import sys\nsys.stderr.write({NASTY!r})\nsys.exit({code})\n"


def deliver(newlines: int) -> str:
    """Code that delivers the golden findings (``newlines`` makes each version a new tree)."""
    text = (TASK / "golden" / "findings.json").read_text().rstrip() + "\n" * newlines
    return ("import os\nos.makedirs('deliverable', exist_ok=True)\n"
            f"open('deliverable/findings.json', 'w').write({text!r})\n")


REFUSED = ("import os\nos.makedirs('deliverable', exist_ok=True)\n"
           "open('deliverable/\\x1b]0;owned\\x07.json', 'w').write('{}')\n")


def publish(hub: Hub, agent: str, code: str, role: str = "specialist",
            owner: str = "mallory") -> None:
    """Publish (or republish) a hosted agent that runs ``python -c CODE``."""
    man = market.load_manifest(dump_yaml({
        "schema_version": 1, "id": agent, "owner": owner, "roles": [role],
        "contracts": ["contract.code_review@1.0.0"], "price": 100,
        "runtime": {"kind": "command", "timeout_seconds": 20,
                    "argv": ["{python}", "-c", code]}}), agent)
    market.register_manifest(hub, man, hosted=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("failed-delivery")
    hub = init_hub(root / "hub", clock=FixedClock(START))
    registrar.add_actor(hub, "carol", ["client"], None, None, True)
    registrar.add_actor(hub, "mallory", ["client"], None, None, True)
    registrar.add_actor(hub, "qa", ["client"], None, None, True)
    publish(hub, "noisy", crash(3))
    publish(hub, "refused", REFUSED)
    publish(hub, "flaky", crash(2))
    publish(hub, "grumpy", crash(1), role="reviewer", owner="qa")
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("carol", 1_000_000, cause="seed")
    yield hub


@pytest.fixture
def cli(hub: Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    monkeypatch.setenv("AISMM_NOW", START)

    def run(*args: str) -> Result:
        return clikit.run(hub.root, capsys, *args)

    return run


def create(hub: Hub, agent: str) -> str:
    return mission.create(hub, contract_ref="contract.code_review", client="carol",
                          inputs=TASK / "inputs", price=100, tier="T0", agents=[agent]).doc.id


def assert_clean(*texts: str) -> None:
    """No raw escape, bell, carriage return, bidi override or C1 control reached the output."""
    for text in texts:
        assert not any(ch in text for ch in RAW), repr(text)


def attempt(cli: Callable[..., Result], mission_id: str) -> tuple[dict[str, Any], str]:
    """The single attempt of ``mission status --json`` and the text status (both checked)."""
    as_json = cli("mission", "status", mission_id, "--json")
    text = cli("mission", "status", mission_id)
    assert (as_json.code, text.code) == (0, 0), (as_json.err, text.err)
    assert_clean(as_json.out, text.out)
    [one] = as_json.json["attempts"]
    return one, text.out


def failure_records(hub: Hub, agent: str, mission_id: str) -> list[dict[str, Any]]:
    with Store(hub.db_path) as store:
        return [r for r in store.executions(agent) if r["mission"] == mission_id
                and r["outcome"] == "failed"]


# -- the one escaping function ----------------------------------------------------------------
def test_printable_escapes_every_terminal_control() -> None:
    shown = printable(NASTY)
    assert_clean(shown)
    assert "\n" not in shown and "\\n" in shown
    assert shown.startswith("\\x1b]0;pwned title\\x07\\x1b]52;c;")
    assert "\\rOVERWRITTEN \\u202eevil\\u202c \\x9b31m" in shown
    assert printable(shown) == shown  # idempotent: safe to apply twice
    assert printable("ok — fine ü", limit=40) == "ok — fine ü"
    assert printable("a\nb\x1b", keep="\n") == "a\nb\\x1b"
    cut = printable("ab\x1bcdef", limit=5)
    assert cut == "ab…" and len(cut) <= 5  # never half an escape


# -- a run that fails: exit 1, one escaped line, and the attempt shows it ---------------------
def test_crashing_agent_fails_the_run_and_shows_in_status(hub: Hub,
                                                          cli: Callable[..., Result]) -> None:
    mission_id = create(hub, "noisy")
    before, _ = attempt(cli, mission_id)
    assert (before["state"], before["failure"]) == ("assigned", None)

    ran = cli("mission", "run", mission_id)
    assert ran.code == 1
    assert_clean(ran.out, ran.err)
    [line] = [x for x in ran.err_lines if "noisy" in x]
    assert line.startswith("aismm: noisy: attempt failed (exit 3: \\x1b]0;pwned title\\x07")
    assert line.endswith("); nothing committed") and "\\nthird line" in line

    [record] = failure_records(hub, "noisy", mission_id)
    assert_clean(record["commits"]["detail"])
    reason = line.removeprefix("aismm: noisy: attempt failed (").removesuffix(
        "); nothing committed")
    assert record["commits"]["detail"] == reason

    one, text = attempt(cli, mission_id)
    assert one["state"] == "failed" and one["deliverable_tree"] is None
    assert one["failure"] == {"reason": reason, "at": START}
    assert "attempts/noisy: failed " in text
    assert f"      run failed at {START}: {reason}" in text.splitlines()
    st = cli("mission", "status", mission_id, "--json").json
    assert st["state"] == "failed" and "run failed" in st["next"]

    as_json = cli("mission", "run", mission_id, "--json")  # again: the same failure, as JSON
    assert as_json.code == 1 and as_json.json["failures"] == [{"agent": "noisy",
                                                               "reason": reason}]
    assert as_json.err_lines == [line]
    assert_clean(as_json.out, as_json.err)


def test_delivery_refused_by_the_gate_fails_the_run(hub: Hub,
                                                    cli: Callable[..., Result]) -> None:
    mission_id = create(hub, "refused")
    ran = cli("mission", "run", mission_id)
    assert ran.code == 1
    assert_clean(ran.out, ran.err)
    [line] = [x for x in ran.err_lines if "refused" in x]
    assert line.startswith("aismm: refused: attempt failed (delivery refused by the gate: "
                           "refs/heads/attempts/refused: deliverable/\\x1b]0;owned\\x07.json: ")
    assert line.endswith("); nothing committed")
    one, text = attempt(cli, mission_id)
    assert one["state"] == "failed" and one["head"] == mission.open_mission(
        hub, mission_id)[1].main  # nothing was committed
    assert one["failure"]["reason"].startswith("delivery refused by the gate: ")
    assert one["failure"]["reason"] in line
    assert f"run failed at {START}: delivery refused by the gate: " in text


# -- a later delivery clears the failure; a failed rework run shows again -----------------------
def test_later_delivery_clears_the_failure_and_failed_rework_shows(
        hub: Hub, cli: Callable[..., Result]) -> None:
    mission_id = create(hub, "flaky")
    failed = cli("mission", "run", mission_id)
    assert failed.code == 1 and "aismm: flaky: attempt failed (exit 2: " in failed.err
    one, _ = attempt(cli, mission_id)
    assert one["state"] == "failed" and one["failure"]["reason"].startswith("exit 2: \\x1b]0;")

    publish(hub, "flaky", deliver(1))  # the provider fixes its agent
    ran = cli("mission", "run", mission_id)
    assert ran.code == 0, ran.err
    assert_clean(ran.out, ran.err)
    assert "flaky delivered " in ran.out and "platform DoD on flaky: PASS" in ran.out
    # the hosted reviewer crashed with escape sequences: reported, escaped, not fatal
    [review] = [x for x in ran.out.splitlines() if x.startswith("reviewer grumpy failed (")]
    assert review.startswith("reviewer grumpy failed (exit 1: \\x1b]0;pwned title\\x07")
    one, text = attempt(cli, mission_id)
    assert (one["state"], one["dod"], one["failure"]) == ("awaiting_acceptance", "pass", None)
    assert "run failed" not in text
    assert len(failure_records(hub, "flaky", mission_id)) == 1  # the record stays, for reputation

    publish(hub, "flaky", crash(2))  # the rework run fails: the rework request shows as failed
    rework = cli("mission", "rework", mission_id, "--attempt", "flaky", "--reason", "more")
    assert rework.code == 0, rework.err
    assert_clean(rework.out, rework.err)
    assert "flaky: attempt failed (exit 2: \\x1b]0;pwned title" in rework.out
    one, text = attempt(cli, mission_id)
    assert one["state"] == "failed" and one["open_request"] == "requests/001-rework.yaml"
    assert one["failure"]["reason"].startswith("exit 2: ") and one["dod"] == "pass"
    assert "run failed at " in text

    publish(hub, "flaky", deliver(2))  # a successful rework delivery clears it again
    again = cli("mission", "run", mission_id)
    assert again.code == 0, again.err
    one, _ = attempt(cli, mission_id)
    assert (one["state"], one["failure"], one["reworks"]) == ("awaiting_acceptance", None, 1)


# -- agent assess: each failing task's first reason, escaped -----------------------------------
def test_assess_prints_each_failing_tasks_first_reason(hub: Hub,
                                                       cli: Callable[..., Result]) -> None:
    done = cli("agent", "assess", "noisy")
    assert done.code == 1
    assert_clean(done.out, done.err)
    tasks = sorted(p.name for p in (TASK.parent).iterdir() if p.is_dir())
    for task in tasks:
        [line] = [x for x in done.out.splitlines() if f" {task}: " in x]
        assert line.startswith(f"  contract.code_review@1.0.0 {task}: DoD fail, quality 0; "
                               "first reason: exit 3: \\x1b]0;pwned title\\x07"), line
    record = cli("agent", "show", "noisy", "--json").json["assessment"]
    assert_clean(json.dumps(record, ensure_ascii=False))
    assert all(t["misses"][0].startswith("exit 3: \\x1b]0;") for t in record["tasks"])
