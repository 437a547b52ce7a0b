"""Test helpers for workflow missions: a template hub with a small workflow contract, scripted
agents (good, bad, flaky, silent), and shortcuts to run a workflow and look at its money.

The template (built once per test module that uses :func:`orch_template`) is a copy of the
settlement template (client ``carol`` with 10,000 tokens) plus:

- ``contract.code_review@1.0.1``: the catalog's code review under a new version, which no
  reference agent serves, so a test decides exactly which agents are candidates;
- ``contract.review_flow@1.0.0``: a one-step workflow (``first``: that review of
  http_helpers' sources, at most 2 attempts, 1 hour per attempt) assembled by the orchestrator;
- the reference orchestrator listed (a platform-signed assessment record, as the other kits do
  for specialists).

Scripted agents are hosted agents whose runtime is ``python -c SCRIPT``: ``good`` delivers the
golden findings, ``bad`` findings that fail the DoD (a line that does not exist), ``lazy``
one finding (the DoD passes, the reviewer fails it), ``flaky`` lazy first and good after a
rework request, ``first-only`` good only on a workflow's first child (``-d001``); ``silent``
is external and never pushes. ``contract.pair_flow@1.0.0`` is the same with a second step that
needs the first (half the budget each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aismm.core.actor import Manifest, Runtime
from aismm.core.model import dump_yaml
from aismm.core.signing import generate_key
from aismm.infra.ledger import Ledger
from aismm.services import market, mission, orchestration, registrar, worker
from aismm.state import registry
from tests.settlekit import CLIENT, GOLDEN, REVIEW_INPUTS, ROOT, START, Site, make_site

__all__ = ["FLOW", "ORCH", "PAIR", "REVIEW_V2", "Flow", "add_agent", "copy_site", "list_agent",
           "orch_template", "start_flow"]

FLOW = "contract.review_flow"
PAIR = "contract.pair_flow"
REVIEW_V2 = "contract.code_review@1.0.1"
ORCH = "ref-orchestrator"
CATALOG = ROOT / "contracts"

FLOW_YAML = f"""\
schema_version: 1
id: contract.review_flow
version: 1.0.0
title: One reviewed step (test workflow)
description: A workflow with one code review step, assembled into a report.
category: workflow
inputs:
  files:
    - path: inputs/request.json
      schema: schemas/review_request.schema.json
    - path: inputs/src/*.py
deliverable:
  files:
    - path: deliverable/report.json
      schema: schemas/deliverable.schema.json
  allowed: [deliverable/report.json]
dod:
  checks:
    - {{name: files, kind: files}}
    - {{name: schema, kind: schema}}
    - {{name: matches-records, kind: command, run: ["{{python}}", "-m", "aismm.checks.workflow"]}}
  review:
    quorum: 0
    rubric:
      - {{id: completeness, description: every step accepted or given up}}
pricing: {{min: 100, max: 20000}}
tiers: {{T0: {{fee_bp: 200}}, T1: {{fee_bp: 1000}}, T2: {{fee_bp: 2500}}}}
steps:
  - id: first
    contract: {REVIEW_V2}
    inputs:
      inputs/request.json: inputs/request.json
      inputs/src/client.py: inputs/src/client.py
      inputs/src/parsing.py: inputs/src/parsing.py
    retry: {{max_attempts: 2, fallback: true, timeouts: {{attempt: PT1H}}}}
    budget_share_bp: 10000
    max_price: 1000
"""


PAIR_YAML = FLOW_YAML.replace("contract.review_flow", "contract.pair_flow").replace(
    "budget_share_bp: 10000", "budget_share_bp: 5000") + f"""\
  - id: second
    contract: {REVIEW_V2}
    needs: [first]
    inputs:
      inputs/request.json: inputs/request.json
      inputs/src/client.py: inputs/src/client.py
      inputs/src/parsing.py: inputs/src/parsing.py
    retry: {{max_attempts: 2, fallback: true, timeouts: {{attempt: PT1H}}}}
    budget_share_bp: 5000
    max_price: 1000
"""


def _publish(site: Site) -> None:
    hub = site.hub
    review = CATALOG / "code_review"
    text = (review / "contract.yaml").read_text().replace("version: 1.0.0", "version: 1.0.1", 1)
    files: dict[str, bytes | None] = {
        "contracts/contract.code_review/1.0.1/contract.yaml": text.encode()}
    for schema in (review / "schemas").glob("*.json"):
        files[f"contracts/contract.code_review/1.0.1/schemas/{schema.name}"] = schema.read_bytes()
    quality = CATALOG / "module_quality" / "schemas"
    for cid, text in (("contract.review_flow", FLOW_YAML), ("contract.pair_flow", PAIR_YAML)):
        files[f"contracts/{cid}/1.0.0/contract.yaml"] = text.encode()
        for name in ("review_request.schema.json", "deliverable.schema.json"):
            files[f"contracts/{cid}/1.0.0/schemas/{name}"] = (quality / name).read_bytes()
    registrar.commit_files(hub, files, "Publish the test workflow\n", hub.config.platform)


def list_agent(site: Site, agent: str) -> None:
    """A passing, platform-signed assessment (the kits' fixture for listing an agent)."""
    record = {"schema_version": 1, "agent": agent, "n": 1, "status": "listed",
              "badge": "silver", "quality": 85.0, "p50_seconds": 1.0, "cost": 100,
              "reasons": [], "tasks": [], "at": START}
    registrar.commit_files(site.hub, {f"assessments/{agent}/0001.yaml":
                                      dump_yaml(record).encode()},
                           f"Assess {agent}: listed (test fixture)\n", site.hub.config.platform)


def build(template: Path, root: Path) -> Path:
    site = make_site(template, root)
    _publish(site)
    list_agent(site, ORCH)
    reviewer = registry.manifests(site.hub)["ref-reviewer"]  # it reviews the new version too
    market.register_manifest(site.hub, reviewer.model_copy(update={
        "contracts": [*reviewer.contracts, REVIEW_V2]}), reviewer.owner)
    return site.root


def orch_template(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Body of a module-scoped template fixture (see the module docstring)."""
    return build(settle_template, tmp_path_factory.mktemp("orch"))


def _findings(kind: str) -> dict[str, Any]:
    data = json.loads(GOLDEN.read_text())
    if kind == "bad":
        data["findings"][0]["line"] = 9999  # schema-valid, fails findings-anchored
    elif kind == "lazy":  # passes the DoD, too thin for the reviewer
        first = data["findings"][0]
        data["findings"] = [first]
        severity = {"error": 0, "warning": 0, "info": 0, first["severity"]: 1}
        data["summary"].update(total=1, by_severity=severity, by_rule={first["rule"]: 1})
    return data


SCRIPT = """\
import json, os, pathlib
mode = {mode!r}
good, bad, lazy = json.loads({good!r}), json.loads({bad!r}), json.loads({lazy!r})
rework = bool(os.environ.get("AISMM_REQUEST"))
first = os.environ.get("AISMM_MISSION", "").endswith("-d001")
out = {{"good": good, "bad": bad, "lazy": lazy, "flaky": good if rework else lazy,
        "first-only": good if first else bad}}[mode]
folder = pathlib.Path("deliverable")
folder.mkdir(exist_ok=True)
(folder / "findings.json").write_text(json.dumps(out, indent=2) + "\\n")
"""


def add_agent(site: Site, agent: str, mode: str, price: int, owner: str = "cheapo",
              contract: str = REVIEW_V2) -> None:
    """Register and list a scripted agent serving ``contract`` at ``price``."""
    if mode == "silent":
        registrar.add_actor(site.hub, agent, ["specialist"], owner, _external_key(), False)
        runtime = Runtime(kind="git")
    else:
        script = SCRIPT.format(mode=mode, good=json.dumps(_findings("good")),
                               bad=json.dumps(_findings("bad")),
                               lazy=json.dumps(_findings("lazy")))
        runtime = Runtime(kind="command", argv=["{python}", "-c", script], timeout_seconds=30)
    man = Manifest(id=agent, owner=owner, roles=["specialist"], contracts=[contract],
                   price=price, capacity=8, runtime=runtime)
    market.register_manifest(site.hub, man, owner, hosted=mode != "silent")
    list_agent(site, agent)


def _external_key() -> str:
    return generate_key().public_line


class Flow:
    """A running workflow mission and what to look at."""

    def __init__(self, site: Site, mission_id: str, lines: list[str]) -> None:
        self.site, self.id, self.lines = site, mission_id, lines

    def process(self) -> list[str]:
        out = worker.process(self.site.hub)
        self.lines += out
        return out

    def tree(self) -> dict[str, Any]:
        return orchestration.tree(self.site.hub, self.id)

    def children(self) -> list[tuple[str, str | None, str]]:
        """(step, agent, state) per child, in decision order."""
        return [(c["step"], c["agent"], c["state"]) for c in self.tree()["children"]]

    def ledger_check(self) -> list[str]:
        with Ledger(self.site.hub.db_path, self.site.hub.clock) as ledger:
            return ledger.check()

    def conserved(self) -> None:
        """The tree's money adds up: what the client paid in is held or paid out."""
        assert self.ledger_check() == []
        balances = self.site.balances()
        assert sum(balances.values()) == 0
        tree = self.tree()
        held = balances.get(f"escrow:{self.id}", 0) + sum(
            balances.get(f"escrow:{c['id']}", 0) for c in tree["children"])
        out = sum(v for k, v in balances.items() if k.startswith(("provider:", "platform:")))
        assert held + out + balances.get(f"client:{CLIENT}", 0) == 10_000


def start_flow(site: Site, contract: str = FLOW, price: int = 1000, tier: str = "T1",
               inputs: Path = REVIEW_INPUTS) -> Flow:
    """Create a workflow mission hiring the reference orchestrator and process the outbox."""
    created = mission.create(site.hub, contract_ref=contract, client=CLIENT, inputs=inputs,
                             price=price, tier=tier, agents=[ORCH])
    flow = Flow(site, created.doc.id, [])
    flow.process()
    return flow


def copy_site(template: Path, dest: Path) -> Site:
    """A private copy of the template with its own clock."""
    return make_site(template, dest)
