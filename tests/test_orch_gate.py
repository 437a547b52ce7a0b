"""An external orchestrator driven by plain git: signed plan files pushed to its attempt of the
parent complete a workflow; a forged, over-budget or otherwise unsound decision is refused by
the gate (the pre-receive hook) with one line, and nothing moves."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from aismm.core.actor import Manifest, Runtime
from aismm.core.signing import read_private_key_file
from aismm.services import market, mission, registrar
from tests.hubkit import ssh_keygen
from tests.orchkit import FLOW, Flow, add_agent, copy_site, list_agent, orch_template
from tests.settlekit import CLIENT, REVIEW_INPUTS, Site, run_git

ORCH = "ext-orch"
REF = f"refs/heads/attempts/{ORCH}"


@pytest.fixture(scope="module")
def template(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return orch_template(settle_template, tmp_path_factory)


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Site:
    return copy_site(template, tmp_path)


def external_orchestrator(site: Site, tmp_path: Path) -> Path:
    """Register ``ext-orch`` with a key of its own (ssh-keygen) and list it; its key file."""
    key = ssh_keygen(tmp_path / "keys" / ORCH / "id_ed25519", ORCH)
    registrar.add_actor(site.hub, ORCH, ["orchestrator"], None,
                        key.with_suffix(".pub").read_text().strip(), False)
    man = Manifest(id=ORCH, owner=ORCH, roles=["orchestrator"],
                   contracts=[f"{FLOW}@1.0.0"], price=100, runtime=Runtime(kind="git"))
    market.register_manifest(site.hub, man, ORCH, key=read_private_key_file(key))
    list_agent(site, ORCH)
    return key


def open_flow(site: Site, tmp_path: Path) -> tuple[Flow, Path]:
    key = external_orchestrator(site, tmp_path)
    add_agent(site, "good-rev", "good", 300)
    created = mission.create(site.hub, contract_ref=FLOW, client=CLIENT, inputs=REVIEW_INPUTS,
                             price=1000, tier="T1", agents=[ORCH])
    flow = Flow(site, created.doc.id, [])
    flow.process()  # the hub writes orchestration/routing.yaml on the attempt
    return flow, key


def clone(site: Site, flow: Flow, where: Path) -> Path:
    run_git("clone", "-q", "--branch", f"attempts/{ORCH}", str(site.hub.mission_path(flow.id)),
            str(where))
    return where


def push(site: Site, work: Path, key: Path, files: dict[str, str | dict[str, object]],
         message: str = "Decide") -> subprocess.CompletedProcess[str]:
    """Write files, commit signed with ``key`` (plain git, ssh signing) and push."""
    run_git("pull", "-q", "--ff-only", cwd=work)
    for rel, body in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        text = body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False)
        (work / rel).write_text(text)
    run_git("add", "-A", cwd=work)
    run_git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
            "-m", message, cwd=work)
    return run_git("push", "-q", "origin", f"HEAD:{REF}", cwd=work,
                   env={"AISMM_NOW": site.now()}, check=False)


def decision(flow: Flow, number: int, kind: str = "open", **extra: object) -> dict[str, object]:
    return {"schema_version": 1, "mission": flow.id, "number": number, "kind": kind,
            "step": "first", **extra}


def refused(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode != 0, proc.stderr
    return [line.removeprefix("remote: ").strip() for line in proc.stderr.splitlines()
            if line.removeprefix("remote: ").startswith("aismm: ")]


def test_an_external_orchestrator_completes_a_workflow_with_plain_git(site: Site,
                                                                      tmp_path: Path) -> None:
    flow, key = open_flow(site, tmp_path)
    work = clone(site, flow, tmp_path / "work")
    routing = yaml.safe_load((work / "orchestration" / "routing.yaml").read_text())
    [candidate] = routing["steps"]["first"]["candidates"]
    assert (candidate["agent"], candidate["price"], routing["steps"]["first"]["fee_bp"]) == (
        "good-rev", 300, 1000)
    figures = [{"agent": "good-rev", "score": candidate["score"], "price": 300}]
    done = push(site, work, key, {"plan/001-open.yaml": decision(
        flow, 1, agent="good-rev", price=300, routing=figures)})
    assert done.returncode == 0, done.stderr
    flow.process()
    assert flow.children() == [("first", "good-rev", "accepted")]
    run_git("pull", "-q", "--ff-only", cwd=work)
    record = yaml.safe_load((work / "orchestration" / "001.yaml").read_text())
    assert (record["child"], record["state"], record["cost"]) == (f"{flow.id}-d001",
                                                                  "accepted", 330)
    files = record["deliverable"]["files"]
    copied = (work / "orchestration/results/001/deliverable/findings.json").read_bytes()
    assert files["deliverable/findings.json"] == hashlib.sha256(copied).hexdigest()
    report = {"schema_version": 1, "module": "src/client.py", "summary": {
        "steps_accepted": 1, "steps_given_up": 0}, "steps": {"first": {
            "state": "accepted", "contract": "contract.code_review@1.0.1",
            "child": record["child"], "agent": "good-rev",
            "commit": record["deliverable"]["commit"], "files": files}}}
    delivered = push(site, work, key, {"deliverable/report.json": json.dumps(report)},
                     "Assemble")
    assert delivered.returncode == 0, delivered.stderr
    flow.process()
    assert site.status(flow.id)["state"] == "awaiting_acceptance"
    flow.conserved()


FORGED = "forged"


@pytest.mark.parametrize(("case", "line"), [
    (FORGED, "plan/001-open.yaml: the client carol may only add files under requests/; ask for "
             "rework with a requests/<nnn>-rework.yaml file"),
    ("over-budget", "plan/001-open.yaml: costs 1100 (price + fee) but step first has 1000 of "
                    "its budget share left; offer less or give it up"),
    ("not-a-candidate", "plan/001-open.yaml: ref-code-reviewer is not a ranked candidate for "
                        "step first; pick an agent from orchestration/routing.yaml"),
    ("below-ask", "plan/001-open.yaml: price 250 is below good-rev's ask 300; offer at least "
                  "the ask or pick another agent"),
    ("numbering", "plan/002-open.yaml: decision number must be 001; number decisions "
                  "consecutively, in the file name and in `number`"),
    ("unknown-step", "plan/001-open.yaml: step lint is not a step of "
                     "contract.review_flow@1.0.0; use one of first"),
    ("fallback-first", "plan/001-fallback.yaml: step first was never opened; open it first"),
    ("two-at-once", "commit {commit}: adds 2 decisions; commit one plan/NNN-<kind>.yaml per "
                    "commit"),
    ("miscited", "plan/001-open.yaml: routing: cites figures that are not step first's in "
                 "orchestration/routing.yaml (the chosen agent's among them); copy the agent, "
                 "score and price of each candidate you weighed"),
])
def test_an_unsound_decision_is_refused_with_one_line(site: Site, tmp_path: Path, case: str,
                                                      line: str) -> None:
    flow, key = open_flow(site, tmp_path)
    work = clone(site, flow, tmp_path / "work")
    before = site.refs(flow.id)
    files: dict[str, str | dict[str, object]] = {
        "plan/001-open.yaml": decision(flow, 1, agent="good-rev", price=300)}
    if case == FORGED:
        key = site.hub.key_path(CLIENT)
    elif case == "over-budget":
        files = {"plan/001-open.yaml": decision(flow, 1, agent="good-rev", price=1000)}
    elif case == "not-a-candidate":
        files = {"plan/001-open.yaml": decision(flow, 1, agent="ref-code-reviewer", price=400)}
    elif case == "below-ask":
        files = {"plan/001-open.yaml": decision(flow, 1, agent="good-rev", price=250)}
    elif case == "numbering":
        files = {"plan/002-open.yaml": decision(flow, 2, agent="good-rev", price=300)}
    elif case == "unknown-step":
        files = {"plan/001-open.yaml": {**decision(flow, 1, agent="good-rev", price=300),
                                        "step": "lint"}}
    elif case == "fallback-first":
        files = {"plan/001-fallback.yaml": decision(flow, 1, "fallback", agent="good-rev",
                                                    price=300)}
    elif case == "miscited":  # a score of its own making, not the routing table's
        files = {"plan/001-open.yaml": decision(flow, 1, agent="good-rev", price=300, routing=[
            {"agent": "good-rev", "score": 99.0, "price": 300}])}
    elif case == "two-at-once":
        files["plan/002-give_up.yaml"] = decision(flow, 2, "give_up")
    proc = push(site, work, key, files)
    commit = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert refused(proc) == [f"aismm: {REF}: {line.format(commit=commit[:12])}"]
    assert site.refs(flow.id) == before
    assert flow.tree()["children"] == []
    assert flow.ledger_check() == []
