"""The marketplace: manifests, assessment before listing, the listing, routing and contests.

One hub for the module, copied for each test: the session's reference hub (the reference agents
registered and assessed), two more providers' code-review agents (``beta-reviewer``, ``gamma-reviewer``, running the reference reviewer's code),
an independent client ``carol`` and a client ``gina`` owned by ``gamma`` (so ``gamma-reviewer`` is
her own agent and must never be picked for her).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aismm.core.clock import FixedClock
from aismm.core.errors import GateRejection
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.signing import verify
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import market, registrar
from aismm.services.hubs import init_hub
from aismm.state import registry
from tests import clikit, hubkit
from tests.clikit import Result
from tests.hubkit import copy_hub

ROOT = Path(__file__).resolve().parent.parent
START = "2026-01-01T00:00:00Z"
CODE_REVIEW = "contract.code_review@1.0.0"
INPUTS = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers" / "inputs"
SPECIALISTS = ("ref-code-reviewer", "ref-schema-designer", "ref-test-writer")
CONTESTANTS = ("beta-reviewer", "gamma-reviewer", "ref-code-reviewer")
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
LISTING_FIELDS = {"agent", "owner", "roles", "contracts", "status", "badge", "price", "capacity",
                  "assessed_quality", "executions", "quality", "quality_lcb", "speed_p50",
                  "cost_per_accepted", "acceptance_rate", "stars", "rank", "trend_30d",
                  "delivered", "accepted", "decided", "quality_basis"}
RANKED_FIELDS = {"agent", "score", "reputation", "price_score", "load_score", "inputs",
                 "eligible"}
RANK_INPUTS = {"agent", "owner", "client_owner", "price", "price_min", "price_max", "capacity",
               "open_attempts", "quality_lcb", "executions", "newcomer", "weights"}


def manifest(agent: str, owner: str, *, price: int = 300, contracts: tuple[str, ...] =
             (CODE_REVIEW,), argv: list[str] | None = None, **extra: Any) -> str:
    """Manifest YAML for a hosted command agent (the reference code reviewer by default)."""
    doc: dict[str, Any] = {
        "schema_version": 1, "id": agent, "owner": owner, "roles": ["specialist"],
        "contracts": list(contracts), "price": price, "capacity": 8,
        "runtime": {"kind": "command", "timeout_seconds": 60,
                    "argv": argv or ["{python}", "-m", "aismm.agents.code_reviewer"]},
    }
    doc.update(extra)
    return dump_yaml(doc)


def publish(hub: Hub, text: str, provider: str | None = None) -> None:
    market.register_manifest(hub, market.load_manifest(text, "manifest"), provider, hosted=True)


@pytest.fixture(scope="module")
def template(reference_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's assessed reference hub, plus this module's providers and clients."""
    hub = copy_hub(reference_hub, tmp_path_factory.mktemp("market") / "hub")
    for provider in ("beta", "gamma"):
        registrar.add_actor(hub, provider, ["client"], None, None, True)
    # the same reviewer code, each provider with its own presentation: identical
    # deliverables from two agents in one mission are refused by the gate
    reviewer = ["{python}", "-m", "aismm.agents.code_reviewer", "--order"]
    publish(hub, manifest("beta-reviewer", "beta", price=300, argv=[*reviewer, "severity"]))
    publish(hub, manifest("gamma-reviewer", "gamma", price=350, argv=[*reviewer, "rule"]))
    for agent in ("beta-reviewer", "gamma-reviewer"):
        assert market.assess(hub, agent).to_json()["status"] == "listed"
    registrar.add_actor(hub, "carol", ["client"], None, None, True)
    registrar.add_actor(hub, "gina", ["client"], "gamma", None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("carol", 100_000, cause="seed")
        ledger.deposit("gina", 100_000, cause="seed")
    return hub.root


@pytest.fixture
def hub(template: Path, tmp_path: Path) -> Hub:
    """Each test's own copy of the template."""
    return copy_hub(template, tmp_path / "own" / "hub")


@pytest.fixture
def cli(hub: Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    """Run ``aismm --hub <hub> ARGS`` in-process at the hub's fixed time."""
    monkeypatch.setenv("AISMM_NOW", START)

    def run(*args: str) -> Result:
        return clikit.run(hub.root, capsys, *args)

    return run


def registry_state(hub: Hub) -> dict[str, Any]:
    """What a refused registration must leave untouched."""
    return {"refs": Repo(hub.registry_path).refs(), "keys": sorted(os.listdir(hub.keys_dir)),
            "signers": hub.allowed_signers_path.read_text()}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV, **(env or {})}, check=False)


# -- assessment before listing ---------------------------------------------------------------
def test_reference_specialists_are_listed_with_a_badge(hub: Hub) -> None:
    for agent in SPECIALISTS:
        record = hubkit.assessment_json(hub, agent)
        assert record is not None
        assert (record["status"], record["badge"], record["reasons"]) == ("listed", "gold", [])
        assert record["n"] == 1 and record["agent"] == agent
        assert all(t["dod"] == "pass" for t in record["tasks"]) and len(record["tasks"]) == 3
    rows = {r.agent: r.to_json() for r in market.listing(hub)}
    assert {a: (rows[a]["status"], rows[a]["badge"]) for a in SPECIALISTS} == \
        {a: ("listed", "gold") for a in SPECIALISTS}
    # ref-reviewer is a reviewer: listed on the reviewer benchmark (tests/test_reviewer_assessment)
    assert (rows["ref-reviewer"]["status"], rows["ref-reviewer"]["badge"]) == ("listed", "gold")


def test_sloppy_agent_is_rejected_with_reasons(hub: Hub) -> None:
    record = hubkit.assessment_json(hub, "sloppy-coder")
    assert record is not None
    assert (record["status"], record["badge"]) == ("rejected", None)
    assert record["reasons"] == [
        "contract.code_review@1.0.0: quality 0 < 80",
        "contract.schema_design@1.0.0: quality 40 < 85",
        "contract.unit_tests@1.0.0: quality 0 < 80",
        ("DoD failed on http_helpers, inventory_service, report_builder, customer, order, "
         "sensor_reading, mathx, money, textkit"),
    ]
    assert {r.agent: r.status for r in market.listing(hub)}["sloppy-coder"] == "rejected"


@pytest.mark.parametrize("agent", ["ref-code-reviewer", "sloppy-coder"])
def test_assessment_record_is_a_platform_signed_registry_commit(hub: Hub, agent: str) -> None:
    path = f"assessments/{agent}/0001.yaml"
    log = git("log", "--format=%H", "main", "--", path, cwd=hub.registry_path)
    commits = log.stdout.split()
    assert log.returncode == 0 and len(commits) == 1
    checked = git("-c", f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}",
                  "verify-commit", "-v", commits[0], cwd=hub.registry_path)
    assert checked.returncode == 0, checked.stderr
    assert 'Good "git" signature for platform@aismm.invalid' in checked.stderr
    repo = Repo(hub.registry_path)
    info = repo.commit(commits[0])
    assert info.signature is not None and info.payload is not None
    platform = registry.actors(hub)[hub.config.platform]
    assert verify(info.signature, info.payload) == platform.key
    assert load_yaml(repo.read(commits[0], path) or b"", path) == hubkit.assessment_json(hub, agent)


def test_each_contract_is_judged_by_its_own_thresholds(hub: Hub) -> None:
    # Passes both contracts' DoD, but asks 600 tokens: within code_review's max_cost (1000),
    # above schema_design's (500). Judging every task by the first contract let it through.
    # The agent program is given inline (`python -c`): the sandbox shows a run nothing of the
    # host beyond the interpreter, the package and its own checkout.
    script = ("import os, runpy, sys\n"
              "name = os.environ['AISMM_CONTRACT'].partition('@')[0]\n"
              "module = {'contract.code_review': 'aismm.agents.code_reviewer',\n"
              "          'contract.schema_design': 'aismm.agents.schema_designer'}[name]\n"
              "sys.argv = [module]\n"
              "runpy.run_module(module, run_name='__main__', alter_sys=True)\n")
    publish(hub, manifest("multi-tool", "beta", price=600, argv=["{python}", "-c", script],
                          contracts=(CODE_REVIEW, "contract.schema_design@1.0.0")))
    record = market.assess(hub, "multi-tool").to_json()
    assert all(t["dod"] == "pass" for t in record["tasks"]) and len(record["tasks"]) == 6
    assert (record["status"], record["badge"]) == ("rejected", None)
    assert record["reasons"] == ["contract.schema_design@1.0.0: price 600 > max_cost 500"]


# -- a rejected agent is never hired by routing ------------------------------------------------
def test_rejected_agent_is_never_picked(hub: Hub, cli: Callable[..., Result]) -> None:
    for client in ("carol", "gina"):
        for n in (1, 2):
            assert "sloppy-coder" not in market.pick(hub, CODE_REVIEW, client, n)
    assert sorted(market.pick(hub, CODE_REVIEW, "carol", 3)) == list(CONTESTANTS)
    ranked = cli("agent", "rank", "--contract", CODE_REVIEW, "--json")
    assert ranked.code == 0, ranked.err
    excluded = {r["agent"]: r for r in ranked.json if not r["eligible"]}
    assert excluded["sloppy-coder"] == {"agent": "sloppy-coder", "eligible": False,
                                        "why": "not listed"}
    assert sorted(r["agent"] for r in ranked.json if r["eligible"]) == list(CONTESTANTS)
    text = cli("agent", "rank", "--contract", CODE_REVIEW)
    assert "sloppy-coder         excluded: not listed" in text.out.splitlines()
    direct = cli("mission", "create", "--contract", "contract.code_review", "--client", "gina",
                 "--inputs", str(INPUTS), "--agent", "sloppy-coder")
    assert (direct.code, direct.err_lines) == (2, [
        ("aismm: --agent sloppy-coder: not listed (no passing assessment); at T1 only listed "
         "agents can be hired: run `aismm agent assess`, or hire it at --tier T0 at your own "
         "risk")])
    auto = cli("mission", "create", "--contract", "contract.code_review", "--client", "gina",
               "--inputs", str(INPUTS), "--auto", "--json")
    assert auto.code == 0, auto.err
    assert auto.json["agents"] == [market.pick(hub, CODE_REVIEW, "gina", 1)[0]]
    assert auto.json["agents"][0] in ("beta-reviewer", "ref-code-reviewer")


def test_contest_larger_than_the_eligible_count_is_refused(hub: Hub,
                                                           cli: Callable[..., Result]) -> None:
    missions = sorted(os.listdir(hub.missions_dir))
    with Ledger(hub.db_path, hub.clock) as ledger:
        balances = ledger.balances()
    create = ("mission", "create", "--contract", "contract.code_review", "--inputs", str(INPUTS))
    four = cli(*create, "--client", "carol", "--contest", "4")
    assert (four.code, four.out) == (2, "")
    assert four.err_lines == [("aismm: --contest 4: only 3 listed agent(s) eligible for "
                               "contract.code_review; lower N or list more agents "
                               "(`aismm agent list`)")]
    # gina is owned by gamma: gamma-reviewer is her own agent and is never eligible for her.
    three = cli(*create, "--client", "gina", "--contest", "3")
    assert (three.code, three.err_lines) == (2, [
        ("aismm: --contest 3: only 2 listed agent(s) eligible for contract.code_review; lower N "
         "or list more agents (`aismm agent list`)")])
    assert sorted(os.listdir(hub.missions_dir)) == missions
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.balances() == balances
    ranked = {r.agent: r.to_json() for r in market.ranking(hub, CODE_REVIEW, "gina")}
    assert ranked["gamma-reviewer"] == {"agent": "gamma-reviewer", "eligible": False,
                                        "why": "owned by the client"}
    two = cli(*create, "--client", "gina", "--contest", "2", "--json")
    assert two.code == 0, two.err
    assert sorted(two.json["agents"]) == ["beta-reviewer", "ref-code-reviewer"]


# -- a contest of three, end to end through the CLI --------------------------------------------
def test_contest_of_three_end_to_end(hub: Hub, cli: Callable[..., Result]) -> None:
    created = cli("mission", "create", "--contract", "contract.code_review", "--client", "carol",
                  "--inputs", str(INPUTS), "--contest", "3", "--json")
    assert created.code == 0, created.err
    mission_id = created.json["id"]
    assert sorted(created.json["agents"]) == list(CONTESTANTS)
    assert created.json["price"] == 400  # the highest ask among the three
    repo = Repo(hub.mission_path(mission_id))
    assert sorted(repo.refs("refs/heads/attempts/")) == [
        f"refs/heads/attempts/{a}" for a in CONTESTANTS]

    # creating the mission ran its hosted agents (inline: no server runs here)
    delivered = [line for line in created.json["lines"] if " delivered " in line]
    assert sorted(line.split()[1] for line in delivered) == list(CONTESTANTS)
    st = cli("mission", "status", mission_id, "--json").json
    assert st["state"] == "awaiting_acceptance" and st["mode"] == "contest"
    for attempt in st["attempts"]:
        tree = repo.subtree_id(attempt["head"], "deliverable")
        assert attempt["deliverable_tree"] == tree is not None
        assert attempt["state"] == "awaiting_acceptance" and attempt["dod"] == "pass"
        assert {who: (v["verdict"], v["current"]) for who, v in attempt["verdicts"].items()} == \
            {"platform": ("pass", True), "ref-reviewer": ("pass", True)}
        assert attempt["quorum"] == {"have": ["ref-reviewer"], "need": 1}

    accepted = cli("mission", "accept", mission_id, "--attempt", "beta-reviewer", "--json")
    assert accepted.code == 0, accepted.err
    assert any("escrow settled: 400 to provider:beta" in line
               for line in accepted.json["lines"])
    st = cli("mission", "status", mission_id, "--json").json
    assert (st["state"], st["accepted"]) == ("settled", "beta-reviewer")
    assert {a["agent"]: a["state"] for a in st["attempts"]} == {
        "beta-reviewer": "accepted", "gamma-reviewer": "not_selected",
        "ref-code-reviewer": "not_selected"}
    assert repo.ref("refs/tags/settled") is not None
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.balance(f"escrow:{mission_id}") == 0
        assert ledger.balance("provider:beta") == 400

    with Store(hub.db_path) as store:
        records = [r for r in store.executions() if r["mission"] == mission_id]
    assert sorted((r["agent"], r["outcome"], r["cost"]) for r in records) == [
        ("beta-reviewer", "accepted", 400), ("gamma-reviewer", "not_selected", 0),
        ("ref-code-reviewer", "not_selected", 0)]

    listed = cli("agent", "list", "--contract", "contract.code_review", "--json")
    assert listed.code == 0, listed.err
    rows = {r["agent"]: r for r in listed.json}
    assert {a: rows[a]["executions"] for a in CONTESTANTS} == {a: 1 for a in CONTESTANTS}
    assert {a: rows[a]["cost_per_accepted"] for a in CONTESTANTS} == {
        "beta-reviewer": 400.0, "gamma-reviewer": None, "ref-code-reviewer": None}
    assert rows["beta-reviewer"]["acceptance_rate"] == 1.0
    assert rows["sloppy-coder"]["executions"] == 0


# -- manifests -------------------------------------------------------------------------------
def test_invalid_manifests_exit_2_and_change_nothing(hub: Hub, cli: Callable[..., Result],
                                                     tmp_path: Path) -> None:
    cases = {
        "bad-yaml": ("schema_version: 1\nid: [oops\n",
                     "line 3: malformed YAML ("),
        "unknown-contract": (manifest("beta-new", "beta", contracts=("contract.nope@1.0.0",)),
                             ("beta-new: contracts: contract.nope@1.0.0 is not published; see "
                              "`aismm contract list`")),
        "wrong-owner": (manifest("ref-code-reviewer", "beta"),
                        ("ref-code-reviewer: owner: beta does not own actor ref-code-reviewer "
                         "(owner acme); set owner to the actor's registered owner")),
        "unknown-field": (manifest("beta-new", "beta", colour="blue"),
                          "colour: Extra inputs are not permitted"),
    }
    before = registry_state(hub)
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = cli("agent", "register", str(path), "--hosted")
        assert (result.code, result.out) == (2, ""), name
        assert len(result.err_lines) == 1 and result.err_lines[0].startswith("aismm: "), \
            result.err
        assert message in result.err_lines[0], result.err
        assert registry_state(hub) == before, name


def test_provider_cannot_publish_a_manifest_for_an_agent_it_does_not_own(
        hub: Hub, cli: Callable[..., Result], tmp_path: Path) -> None:
    before = registry_state(hub)
    # An existing agent of another owner: the gate refuses beta's signature.
    path = tmp_path / "steal.yaml"
    path.write_text(manifest("ref-code-reviewer", "acme", price=100))
    result = cli("agent", "register", str(path), "--as", "beta")
    assert (result.code, result.out) == (1, "")
    assert result.err_lines == [
        ("aismm: refs/heads/main: agents/ref-code-reviewer.yaml: beta may not publish a manifest "
         "owned by acme; sign it with the provider's key")]
    with pytest.raises(GateRejection, match="beta may not publish a manifest owned by acme"):
        publish(hub, manifest("ref-code-reviewer", "acme", price=100), "beta")
    # A new hosted agent for another owner: refused before its actor is created.
    path = tmp_path / "foreign.yaml"
    path.write_text(manifest("beta-clone", "acme"))
    result = cli("agent", "register", str(path), "--hosted", "--as", "beta")
    assert (result.code, result.err_lines) == (2, [
        ("aismm: beta-clone: beta may not publish a manifest owned by acme; sign it as acme "
         "(--as)")])
    assert registry_state(hub) == before
    assert "beta-clone" not in registry.actors(hub)
    assert registry.manifests(hub)["ref-code-reviewer"].price == 400


def test_registry_git_has_the_gate_hooks(tmp_path: Path) -> None:
    fresh = init_hub(tmp_path / "hub", clock=FixedClock(START))
    hooks = fresh.registry_path / "hooks"
    missing = [n for n in ("pre-receive", "post-receive") if not (hooks / n).is_file()]
    assert missing == []


def test_plain_git_push_of_a_manifest(hub: Hub, tmp_path: Path) -> None:
    clone = tmp_path / "registry"
    assert git("clone", "-q", str(hub.registry_path), str(clone)).returncode == 0
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={hub.key_path('beta')}"]

    def commit_and_push(path: str, text: str) -> subprocess.CompletedProcess[str]:
        git("reset", "-q", "--hard", "origin/main", cwd=clone)
        (clone / path).write_text(text)
        assert git("add", path, cwd=clone).returncode == 0
        done = git(*sign, "commit", "-q", "-S", "-m", f"Update {path}", cwd=clone)
        assert done.returncode == 0, done.stderr
        return git("push", "origin", "HEAD:main", cwd=clone)

    # beta's own agent: accepted.
    own = manifest("beta-reviewer", "beta", price=300, description="now with line anchors")
    pushed = commit_and_push("agents/beta-reviewer.yaml", own)
    assert pushed.returncode == 0, pushed.stderr
    head = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    assert Repo(hub.registry_path).ref("refs/heads/main") == head
    assert registry.manifests(hub)["beta-reviewer"].description == "now with line anchors"

    # acme's agent, signed by beta: rejected by the pre-receive gate, registry unchanged.
    stolen = manifest("ref-code-reviewer", "acme", price=100)
    refused = commit_and_push("agents/ref-code-reviewer.yaml", stolen)
    assert refused.returncode != 0
    assert ("remote: aismm: refs/heads/main: agents/ref-code-reviewer.yaml: beta may not publish "
            "a manifest owned by acme; sign it with the provider's key") in refused.stderr
    assert Repo(hub.registry_path).ref("refs/heads/main") == head
    assert registry.manifests(hub)["ref-code-reviewer"].price == 400


# -- the listing and ranking documents ---------------------------------------------------------
def test_listing_and_ranking_json_fields(hub: Hub, cli: Callable[..., Result]) -> None:
    listed = cli("agent", "list", "--json")
    assert listed.code == 0, listed.err
    assert listed.json == json.loads(json.dumps([r.to_json() for r in market.listing(hub)]))
    for row in listed.json:
        assert set(row) == LISTING_FIELDS, row["agent"]
    by_agent = {r["agent"]: r for r in listed.json}
    assert by_agent["ref-code-reviewer"]["status"] == "listed"
    assert by_agent["ref-code-reviewer"]["price"] == 400
    ranked = cli("agent", "rank", "--contract", CODE_REVIEW, "--client", "carol", "--json")
    assert ranked.code == 0, ranked.err
    eligible = [r for r in ranked.json if r["eligible"]]
    excluded = [r for r in ranked.json if not r["eligible"]]
    assert sorted(r["agent"] for r in eligible) == list(CONTESTANTS)
    assert [r["score"] for r in eligible] == sorted((r["score"] for r in eligible), reverse=True)
    for row in eligible:
        assert set(row) == RANKED_FIELDS
        assert set(row["inputs"]) == RANK_INPUTS
        assert row["inputs"]["client_owner"] == "carol"
        assert set(row["inputs"]["weights"]) == {"reputation", "price", "load"}
    for row in excluded:
        assert set(row) == {"agent", "eligible", "why"}
