"""``aismm agent register/show/assess/list/rank``: exit codes, messages and ``--json`` shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aismm.core.model import dump_yaml
from aismm.infra.git import Repo
from tests import clikit
from tests.clikit import Result

START = "2026-01-01T00:00:00Z"
CODE_REVIEW = "contract.code_review@1.0.0"
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
MANIFEST_FIELDS = {"schema_version", "id", "owner", "roles", "contracts", "price", "capacity",
                   "runtime", "description"}
ASSESSMENT_FIELDS = {"schema_version", "agent", "n", "status", "badge", "quality", "p50_seconds",
                     "cost", "reasons", "tasks", "at"}
TASK_FIELDS = {"contract", "task", "dod", "quality", "seconds", "misses", "failed_checks"}
LISTING_FIELDS = {"agent", "owner", "roles", "contracts", "status", "badge", "price", "capacity",
                  "assessed_quality", "executions", "quality", "quality_lcb", "speed_p50",
                  "cost_per_accepted", "acceptance_rate", "stars", "rank", "trend_30d",
                  "delivered", "accepted", "decided", "quality_basis"}


def invoke(hub: Path, *args: str) -> Result:
    """``aismm --hub HUB ARGS`` in-process; the exit code main() chose."""
    return clikit.run(hub, None, *args)


def manifest(agent: str, owner: str, module: str = "code_reviewer", **extra: Any) -> str:
    doc: dict[str, Any] = {
        "schema_version": 1, "id": agent, "owner": owner, "roles": ["specialist"],
        "contracts": [CODE_REVIEW], "price": 300, "capacity": 4,
        "runtime": {"kind": "command", "argv": ["{python}", "-m", f"aismm.agents.{module}"],
                    "timeout_seconds": 60},
    }
    doc.update(extra)
    return dump_yaml(doc)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A hub with providers ``acme`` and ``cheapo`` and client ``carol``; no agents yet."""
    hub = tmp_path_factory.mktemp("agent-cli") / "hub"
    with pytest.MonkeyPatch.context() as mp:  # the clock only while building: no leak
        mp.setenv("AISMM_NOW", START)
        for args in (("hub", "init", str(hub)),
                     ("actor", "add", "acme", "--role", "client", "--hosted"),
                     ("actor", "add", "cheapo", "--role", "client", "--hosted"),
                     ("actor", "add", "carol", "--role", "client", "--owner", "acme",
                      "--hosted")):
            assert invoke(hub, *args).code == 0, args
    yield hub


@pytest.fixture
def cli(hub: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    monkeypatch.setenv("AISMM_NOW", START)

    def run(*args: str) -> Result:
        return clikit.run(hub, capsys, *args)

    return run


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("manifests")
    (folder / "good.yaml").write_text(manifest("good-reviewer", "acme"))
    (folder / "sloppy.yaml").write_text(manifest("sloppy-reviewer", "cheapo", "sloppy",
                                                 price=100))
    (folder / "external.yaml").write_text(manifest("ext-reviewer", "acme",
                                                   runtime={"kind": "git"}))
    (folder / "typo.yaml").write_text(manifest("typo-reviewer", "acme", prise=3))
    return folder


def test_register_publishes_the_manifest(cli: Callable[..., Result], hub: Path,
                                         files: Path) -> None:
    text = cli("agent", "register", str(files / "good.yaml"), "--hosted")
    assert (text.code, text.err) == (0, "")
    assert text.out == ("Published good-reviewer (owner acme) for contract.code_review@1.0.0; "
                        "assess it with `aismm agent assess good-reviewer`\n")
    again = cli("agent", "register", str(files / "sloppy.yaml"), "--hosted", "--json")
    assert again.code == 0, again.err
    assert set(again.json) == MANIFEST_FIELDS
    assert (again.json["id"], again.json["owner"], again.json["price"]) == \
        ("sloppy-reviewer", "cheapo", 100)
    external = cli("agent", "register", str(files / "external.yaml"), "--hosted", "--json")
    assert external.code == 0, external.err
    assert external.json["runtime"] == {"kind": "git", "argv": None, "url": None,
                                       "timeout_seconds": 60.0}
    repo = Repo(hub / "registry.git")
    tip = repo.ref("refs/heads/main")
    assert tip is not None
    for agent in ("good-reviewer", "sloppy-reviewer", "ext-reviewer"):
        assert repo.read(tip, f"agents/{agent}.yaml") is not None


def test_register_refuses_bad_input(cli: Callable[..., Result], hub: Path, files: Path) -> None:
    before = Repo(hub / "registry.git").refs()
    typo = cli("agent", "register", str(files / "typo.yaml"), "--hosted")
    assert (typo.code, typo.out) == (2, "")
    assert typo.err.splitlines() == [(f"aismm: {files / 'typo.yaml'}: prise: Extra inputs are "
                                      "not permitted; see `aismm schema export`")]
    missing = cli("agent", "register", str(files / "nope.yaml"))
    assert missing.code == 2 and "does not exist" in missing.err
    (files / "unregistered.yaml").write_text(manifest("lone-reviewer", "acme"))
    lone = cli("agent", "register", str(files / "unregistered.yaml"))
    assert (lone.code, lone.err.splitlines()) == (2, [
        ("aismm: lone-reviewer: not a registered actor; register it with `aismm actor add` "
         "(or --hosted) first")])
    assert Repo(hub / "registry.git").refs() == before


def test_show(cli: Callable[..., Result]) -> None:
    shown = cli("agent", "show", "good-reviewer", "--json")
    assert shown.code == 0, shown.err
    assert set(shown.json) == {"manifest", "assessment"}
    assert set(shown.json["manifest"]) == MANIFEST_FIELDS
    assert shown.json["assessment"] is None  # not assessed yet
    text = cli("agent", "show", "good-reviewer")
    assert text.code == 0 and "id: good-reviewer\n" in text.out and "assessment: null" in text.out
    unknown = cli("agent", "show", "nobody")
    assert (unknown.code, unknown.err) == (2, ("aismm: nobody: no such agent; see `aismm agent "
                                               "list`\n"))


def test_assess_lists_a_good_agent(cli: Callable[..., Result]) -> None:
    done = cli("agent", "assess", "good-reviewer", "--json")
    assert done.code == 0, done.err
    record = done.json
    assert set(record) == ASSESSMENT_FIELDS
    assert (record["agent"], record["n"], record["status"], record["badge"], record["reasons"]) \
        == ("good-reviewer", 1, "listed", "gold", [])
    assert [t["task"] for t in record["tasks"]] == ["http_helpers", "inventory_service",
                                                    "report_builder"]
    assert all(set(t) == TASK_FIELDS and t["dod"] == "pass" for t in record["tasks"])
    shown = cli("agent", "show", "good-reviewer", "--json").json
    assert shown["assessment"] == record


def test_assess_rejects_a_sloppy_agent_with_exit_1(cli: Callable[..., Result]) -> None:
    done = cli("agent", "assess", "sloppy-reviewer")
    assert done.code == 1
    assert done.out.splitlines()[0] == "sloppy-reviewer: REJECTED"
    assert "  reason: quality 0 < 80" in done.out.splitlines()
    progress = [line for line in done.err.splitlines() if line.startswith("  [")]
    assert len(progress) == 3 and all(" DoD fail, " in line for line in progress)
    assert done.err.splitlines()[-1] == (
        "aismm: sloppy-reviewer: rejected by assessment (quality 0 < 80; DoD failed on "
        "http_helpers, inventory_service, report_builder); improve the agent and assess again")
    again = cli("agent", "assess", "sloppy-reviewer", "--json")
    assert again.code == 1
    assert (again.json["n"], again.json["status"], again.json["badge"]) == (2, "rejected", None)
    assert not any(line.startswith("  [") for line in again.err.splitlines())


def test_assess_bad_input_exits_2(cli: Callable[..., Result]) -> None:
    unknown = cli("agent", "assess", "nobody")
    assert (unknown.code, unknown.err) == (
        2, "aismm: nobody: no manifest; publish one with `aismm agent register`\n")
    negative = cli("agent", "assess", "good-reviewer", "--timeout", "abc")
    assert negative.code == 2 and "'abc' is not a valid float" in negative.err


def test_list(cli: Callable[..., Result]) -> None:
    listed = cli("agent", "list", "--json")
    assert listed.code == 0, listed.err
    rows = {r["agent"]: r for r in listed.json}
    assert sorted(rows) == ["ext-reviewer", "good-reviewer", "sloppy-reviewer"]
    assert all(set(r) == LISTING_FIELDS for r in listed.json)
    assert {a: (r["status"], r["badge"], r["executions"]) for a, r in rows.items()} == {
        "ext-reviewer": ("unassessed", None, 0), "good-reviewer": ("listed", "gold", 0),
        "sloppy-reviewer": ("rejected", None, 0)}
    filtered = cli("agent", "list", "--contract", "contract.unit_tests", "--json")
    assert (filtered.code, filtered.json) == (0, [])
    by_role = cli("agent", "list", "--role", "reviewer", "--json")
    assert (by_role.code, by_role.json) == (0, [])
    text = cli("agent", "list")
    lines = text.out.splitlines()
    assert lines[0].split() == ["agent", "status", "badge", "price", "quality", "p50", "s",
                                "cost/acc", "stars", "rank", "trend", "n"]
    assert lines[2].split()[:4] == ["good-reviewer", "listed", "gold", "300"]


def test_rank(cli: Callable[..., Result]) -> None:
    ranked = cli("agent", "rank", "--contract", CODE_REVIEW, "--json")
    assert ranked.code == 0, ranked.err
    assert [(r["agent"], r["eligible"]) for r in ranked.json] == [
        ("good-reviewer", True), ("ext-reviewer", False), ("sloppy-reviewer", False)]
    best = ranked.json[0]
    assert set(best) == {"agent", "score", "reputation", "price_score", "load_score", "inputs",
                         "eligible"}
    assert best["inputs"]["newcomer"] is True and best["inputs"]["client_owner"] is None
    assert [r.get("why") for r in ranked.json[1:]] == ["not listed", "not listed"]
    # carol belongs to acme, which owns good-reviewer: nothing is eligible for her.
    for_carol = cli("agent", "rank", "--contract", CODE_REVIEW, "--client", "carol", "--json")
    assert for_carol.code == 0
    assert {r["agent"]: r.get("why") for r in for_carol.json} == {
        "good-reviewer": "owned by the client", "ext-reviewer": "owned by the client",
        "sloppy-reviewer": "not listed"}
    text = cli("agent", "rank", "--contract", CODE_REVIEW)
    assert text.out.splitlines()[1:] == ["ext-reviewer         excluded: not listed",
                                         "sloppy-reviewer      excluded: not listed"]
    assert text.out.startswith("good-reviewer        score ")
    none = cli("agent", "rank", "--contract", "contract.unit_tests")
    assert (none.code, none.out) == (0, "(no agents)\n")
    usage = cli("agent", "rank")
    assert (usage.code, usage.err_lines) == (2, [
        "aismm: agent rank: missing option --contract; see aismm agent rank --help"])
    stranger = cli("agent", "rank", "--contract", CODE_REVIEW, "--client", "nobody")
    assert stranger.code == 2 and stranger.err.startswith("aismm: nobody: unknown actor")


def test_exit_codes_of_the_real_command(hub: Path) -> None:
    env = {**os.environ, **GIT_ENV, "AISMM_HUB": str(hub), "AISMM_NOW": START}
    ok = subprocess.run([sys.executable, "-m", "aismm", "agent", "list", "--json"], env=env,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 3
    bad = subprocess.run([sys.executable, "-m", "aismm", "agent", "show", "nobody"], env=env,
                         capture_output=True, text=True, check=False)
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        2, "", "aismm: nobody: no such agent; see `aismm agent list`\n")
