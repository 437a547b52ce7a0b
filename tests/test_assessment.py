"""The assessment loop: deliveries become platform and reviewer verdicts, committed back.

One hub for the module, copied for each test (the benchmark cases share one copy): the session's
reference hub (the specialists assessed and listed, sloppy-coder assessed and rejected), a client
``carol``, and a provider ``mallory`` whose hosted agents misbehave on purpose.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aismm.core.model import dump_yaml
from aismm.core.signing import verify
from aismm.infra.git import CommitInfo, Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import (
    delivery,
    lifecycle,
    market,
    mission,
    registrar,
    settlement,
    worker,
)
from aismm.services.mission import ATTEMPT
from aismm.state import registry
from tests import clikit, hubkit
from tests.clikit import Result
from tests.hubkit import copy_hub

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "contracts"
START = "2026-01-01T00:00:00Z"
REFERENCE = {"code_review": "ref-code-reviewer", "schema_design": "ref-schema-designer",
             "unit_tests": "ref-test-writer"}
TASKS = [(name, task.name) for name in sorted(REFERENCE)
         for task in sorted((CATALOG / name / "benchmark").iterdir()) if task.is_dir()]
CODE_INPUTS = CATALOG / "code_review" / "benchmark" / "http_helpers" / "inputs"
GOLDEN = CATALOG / "code_review" / "benchmark" / "http_helpers" / "golden" / "findings.json"
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}

# Hosted agents that misbehave; each is (script, expected start of the failure detail).
# Each may run 2 s (a bound none of them should reach), except ``sleep``, which must reach its
# own: it is stopped after SLEEP_TIMEOUT, so the test does not wait out two seconds.
TIMEOUT, SLEEP_TIMEOUT = 2.0, 0.3
MISBEHAVING = {
    "crash": ("raise RuntimeError('agent crashed on purpose')\n",
              "exit 1: Traceback"),
    "sleep": ("import time\ntime.sleep(30)\n", "timed out"),
    "garbage": (("import os\nos.makedirs('deliverable', exist_ok=True)\n"
                 "open('deliverable/findings.json', 'w').write('{\"findings\": [oops')\n"),
                "refs/heads/attempts/bad-garbage: deliverable/findings.json"),
    "outside": (("import os\nos.makedirs('deliverable', exist_ok=True)\n"
                 "open('deliverable/findings.json', 'w').write('{\"findings\": []}')\n"
                 "open('verdicts-platform.yaml', 'w').write('verdict: pass')\n"
                 "open('inputs/src/extra.py', 'w').write('x = 1')\n"),
                "wrote outside deliverable/: inputs/src/extra.py, verdicts-platform.yaml"),
}


# Schema-valid deliverables that pass the gate and fail the DoD's command check.
CARELESS = """\
import json, os, pathlib
os.makedirs('deliverable', exist_ok=True)
if os.environ['AISMM_CONTRACT'].startswith('contract.code_review@'):
    first = sorted(pathlib.Path('inputs/src').glob('*.py'))[0].as_posix()
    finding = {'file': first, 'line': 9999, 'rule': 'other', 'severity': 'warning',
               'message': 'this line looks wrong to me'}
    name, doc = 'findings.json', {'schema_version': 1, 'findings': [finding], 'summary': {
        'files_reviewed': 1, 'total': 1, 'by_severity': {'error': 0, 'warning': 1, 'info': 0}}}
else:
    name, doc = 'schema.json', {'type': 'object', 'properties': {'nope': {'type': 'string'}},
                                'required': ['nope'], 'additionalProperties': False}
with open(f'deliverable/{name}', 'w') as out:
    json.dump(doc, out)
"""
# The agents run as ``python -c SCRIPT``: the sandbox shows a run only the system, the
# interpreter, the aismm package and its own checkout, so a script file elsewhere is unreadable.
SCRIPTS = {"careless": CARELESS, **{name: text for name, (text, _) in MISBEHAVING.items()}}


@pytest.fixture(scope="module")
def template(reference_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's assessed reference hub, plus this module's clients and hosted agents."""
    hub = copy_hub(reference_hub, tmp_path_factory.mktemp("assessment") / "hub")
    for agent in REFERENCE.values():
        record = hubkit.assessment_json(hub, agent)
        assert record is not None and record["status"] == "listed", record
    registrar.add_actor(hub, "carol", ["client"], None, None, True)
    registrar.add_actor(hub, "mallory", ["client"], None, None, True)
    for name in ("careless", *MISBEHAVING):
        man = market.load_manifest(dump_yaml({
            "schema_version": 1, "id": "careless" if name == "careless" else f"bad-{name}",
            "owner": "mallory",
            "roles": ["specialist"], "contracts": ["contract.code_review@1.0.0"] +
            (["contract.schema_design@1.0.0"] if name == "careless" else []),
            "price": 100, "capacity": 64, "runtime": {"kind": "command",
                                      "timeout_seconds": SLEEP_TIMEOUT if name == "sleep"
                                      else TIMEOUT,
                                      "argv": ["{python}", "-c", SCRIPTS[name]]},
        }), name)
        market.register_manifest(hub, man, hosted=True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("carol", 1_000_000, cause="seed")
    return hub.root


@pytest.fixture
def hub(template: Path, tmp_path: Path) -> Hub:
    """Each test's own copy of the template."""
    return copy_hub(template, tmp_path / "own" / "hub")


def daemon(hub: Hub) -> Hub:
    """The same hub with ``processing: daemon``: writes queue events without processing them."""
    view = copy.copy(hub)
    view.config = hub.config.model_copy(update={"processing": "daemon"})
    return view


def create(hub: Hub, contract: str, inputs: Path, agent: str, tier: str = "T1",
           price: int | None = None) -> str:
    return mission.create(hub, contract_ref=f"contract.{contract}", client="carol",
                          inputs=inputs, price=price, tier=tier, agents=[agent]).doc.id


def content(repo: Repo, commit: str, path: str) -> bytes | str | None:
    """A file's bytes or a folder's tree id at a commit (None when absent)."""
    return repo.read(commit, path) or repo.subtree_id(commit, path)


def changes(repo: Repo, tip: str, path: str) -> list[CommitInfo]:
    """The commits of ``tip``'s history that changed ``path``, oldest first."""
    return [info for info in repo.iter_commits(tip) if content(repo, info.id, path) !=
            (content(repo, info.parents[0], path) if info.parents else None)]


def writer_of(repo: Repo, tip: str, path: str) -> CommitInfo:
    """The commit on ``tip``'s history that last changed ``path``."""
    found = changes(repo, tip, path)
    assert found, f"{path} was never written"
    return found[-1]


def signer_of(hub: Hub, info: CommitInfo) -> str:
    """The registered actor whose key signed a commit (checked in-process)."""
    assert info.signature is not None and info.payload is not None
    snap = registry.snapshot(Repo(hub.registry_path))
    return snap.by_key[verify(info.signature, info.payload)].id


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV, **(env or {})}, check=False)


@pytest.fixture
def cli(hub: Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    """Run ``aismm --hub <hub> ARGS`` in-process at the hub's fixed time."""
    monkeypatch.setenv("AISMM_NOW", START)

    def run(*args: str) -> Result:
        return clikit.run(hub.root, capsys, *args)

    return run


# -- every benchmark task: the reference specialist passes, careless work fails -----------------
# sloppy-coder's code_review and schema_design deliveries break the contract's deliverable rules
# (a file outside the allowed ones; a schema without properties), so the gate refuses them
# before any DoD runs: a failed attempt and no verdict. Its unit_tests delivery passes the gate
# and fails the DoD. ``careless`` shows the failing platform verdict on the other two contracts.
GATE_REFUSED = {
    "code_review": "deliverable/scratch.txt: not an allowed deliverable path; deliver only "
                   "deliverable/findings.json, deliverable/notes.md",
    "schema_design": "deliverable/schema.json: fails the contract schema ((document): "
                     "'properties' is a required property); make the file match the contract's "
                     "schema",
}
FAILED_CHECKS = {"code_review": ["findings-anchored"], "schema_design": ["schema-fits-samples"],
                 "unit_tests": ["files", "tests-pass", "tests-catch-stubs"]}
CASES = [(name, task, agent) for name, task in TASKS
         for agent in ("reference", "sloppy-coder", *(("careless",) if name in GATE_REFUSED
                                                      else ()))]


def agent_id(contract: str, agent: str) -> str:
    return REFERENCE[contract] if agent == "reference" else agent


@pytest.fixture(scope="module")
def bench_hub(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Hub:
    """One copy of the template for the benchmark cases below, shared by them (read only)."""
    return copy_hub(template, tmp_path_factory.mktemp("bench") / "hub")


@pytest.fixture(scope="module")
def benchmark_missions(bench_hub: Hub) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """A mission per case (T1 for the listed reference specialist, T0 for the unlisted),
    delivered (dispatch) and assessed (events.process), several at a time, in ``bench_hub``."""
    hub = bench_hub
    plan = {}
    for name, task, agent in CASES:
        inputs = CATALOG / name / "benchmark" / task / "inputs"
        plan[(name, task, agent)] = create(hub, name, inputs, agent_id(name, agent),
                                           "T1" if agent == "reference" else "T0")
    with ThreadPoolExecutor(max_workers=4) as pool:
        lines = list(pool.map(lambda m: delivery.dispatch(hub, m), plan.values()))
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: worker.process(hub), range(4)))
    with Store(hub.db_path) as store:
        assert store.pending() == 0
    return {case: (m, out) for (case, m), out in zip(plan.items(), lines)}


@pytest.mark.parametrize(("contract", "task", "agent"), CASES)
def test_benchmark_task_platform_verdict(bench_hub: Hub, benchmark_missions: dict[Any, Any],
                                         contract: str, task: str, agent: str) -> None:
    hub = bench_hub
    who = agent_id(contract, agent)
    mission_id, lines = benchmark_missions[(contract, task, agent)]
    repo, policy = mission.open_mission(hub, mission_id)
    tip = repo.ref(f"{ATTEMPT}{who}")
    assert tip is not None
    st = lifecycle.status(hub, mission_id)["attempts"][0]
    if agent == "sloppy-coder" and contract in GATE_REFUSED:
        reason = ("delivery refused by the gate: "
                  f"refs/heads/attempts/sloppy-coder: {GATE_REFUSED[contract]}")
        assert lines == [f"aismm: sloppy-coder: attempt failed ({reason}); nothing committed"]
        assert tip == policy.main and (st["state"], st["verdicts"]) == ("failed", {})
        assert st["failure"]["reason"] == reason
        with Store(hub.db_path) as store:
            outcomes = [r["outcome"] for r in store.executions(who) if r["mission"] == mission_id]
        assert outcomes == ["failed"]
        return
    assert len(lines) == 1 and lines[0].startswith(f"aismm: {who} delivered "), lines
    tree = repo.subtree_id(tip, "deliverable")
    assert tree is not None
    expected = "pass" if agent == "reference" else "fail"
    assert st["dod"] == expected
    assert st["state"] == ("awaiting_acceptance" if agent == "reference" else "failed")
    assert {w: (v["verdict"], v["current"]) for w, v in st["verdicts"].items()} == {
        "platform": (expected, True), "ref-reviewer": (expected, True)}
    failed = [c["name"] for c in st["verdicts"]["platform"]["checks"] if c["status"] != "pass"]
    assert failed == ([] if agent == "reference" else FAILED_CHECKS[contract])
    for path, signer in (("verdicts/platform.yaml", hub.config.platform),
                         ("verdicts/ref-reviewer.yaml", "ref-reviewer")):
        written = writer_of(repo, tip, path)
        assert signer_of(hub, written) == signer
        assert repo.subtree_id(written.id, "deliverable") == tree  # judged this very tree
        text = (repo.read(tip, path) or b"").decode()
        assert f"deliverable_tree: {tree}\n" in text and f"mission: {mission_id}\n" in text
    assert signer_of(hub, writer_of(repo, tip, "deliverable")) == who


# -- misbehaving hosted agents: a failed attempt, never a corrupted repository ------------------
@pytest.mark.parametrize("behaviour", sorted(MISBEHAVING))
def test_misbehaving_agent_is_a_failed_attempt(hub: Hub, behaviour: str) -> None:
    agent = f"bad-{behaviour}"
    mission_id = create(hub, "code_review", CODE_INPUTS, agent, tier="T0", price=100)
    repo, policy = mission.open_mission(hub, mission_id)
    refs = repo.refs()
    lines = delivery.dispatch(hub, mission_id)
    assert len(lines) == 1
    assert lines[0].startswith(f"aismm: {agent}: ")
    assert "attempt failed (" in lines[0] and lines[0].endswith("; nothing committed")
    if behaviour == "garbage":
        assert "attempt failed (delivery refused by the gate: " in lines[0]
    assert MISBEHAVING[behaviour][1] in lines[0]
    assert repo.refs() == refs and refs[f"{ATTEMPT}{agent}"] == policy.main
    fsck = git("fsck", "--strict", "--no-dangling", cwd=repo.path)
    assert (fsck.returncode, fsck.stdout, fsck.stderr) == (0, "", "")
    with Store(hub.db_path) as store:
        records = [r for r in store.executions(agent) if r["mission"] == mission_id]
        moves = [r for r in store.events(f"missions/{mission_id}.git")
                 if r.new != policy.main]
    assert moves == []  # nothing was delivered, so nothing waits to be assessed
    assert [(r["outcome"], r["quality"], r["cost"]) for r in records] == [("failed", 0.0, 0)]
    assert records[0]["commits"]["head"] == policy.main
    assert records[0]["commits"]["detail"] and records[0]["commits"]["detail"] in lines[0]
    [attempt] = lifecycle.status(hub, mission_id)["attempts"]
    assert attempt["state"] == "failed"  # nothing committed, and the failure shows
    assert attempt["failure"]["reason"] == records[0]["commits"]["detail"]


def test_garbage_deliverable_is_refused_for_its_schema(hub: Hub) -> None:
    mission_id = create(hub, "code_review", CODE_INPUTS, "bad-garbage", tier="T0", price=100)
    [line] = delivery.dispatch(hub, mission_id)
    assert line.startswith("aismm: bad-garbage: attempt failed (delivery refused by the gate: "
                           "refs/heads/attempts/bad-garbage: deliverable/findings.json: ")
    assert "JSON" in line or "json" in line or "schema" in line


# -- rework: the agent runs again with AISMM_REQUEST; old verdicts go stale ---------------------
def test_rework_reinvokes_the_agent_and_stales_old_verdicts(hub: Hub,
                                                             cli: Callable[..., Result]) -> None:
    worker.process(hub)
    agent = "ref-code-reviewer"
    mission_id = create(hub, "code_review", CODE_INPUTS, agent)
    delivery.dispatch(hub, mission_id)
    worker.process(hub)
    repo, _ = mission.open_mission(hub, mission_id)
    first = repo.ref(f"{ATTEMPT}{agent}")
    assert first is not None
    old_tree = repo.subtree_id(first, "deliverable")
    before = cli("mission", "status", mission_id, "--json").json["attempts"][0]
    assert before["state"] == "awaiting_acceptance"
    assert {w: v["current"] for w, v in before["verdicts"].items()} == \
        {"platform": True, "ref-reviewer": True}

    queued = daemon(hub)
    reason = "Also explain each finding's fix in notes."
    lines = settlement.request(queued, mission_id, agent, "rework", reason)
    assert lines == [(f"aismm: carol filed requests/001-rework.yaml on attempts/{agent} "
                      f"({repo.ref(f'{ATTEMPT}{agent}')[:12]})")]  # type: ignore[index]
    assert worker.process(queued, limit=1)[0].startswith(f"aismm: {agent} delivered ")
    tip = repo.ref(f"{ATTEMPT}{agent}")
    assert tip is not None
    new_tree = repo.subtree_id(tip, "deliverable")
    assert new_tree not in (None, old_tree)
    notes = (repo.read(tip, "deliverable/notes.md") or b"").decode()
    assert "Request: `requests/001-rework.yaml`" in notes and f"> {reason}" in notes
    assert signer_of(hub, writer_of(repo, tip, "deliverable/notes.md")) == agent

    stale = cli("mission", "status", mission_id, "--json")
    assert stale.code == 0, stale.err
    attempt = stale.json["attempts"][0]
    assert (attempt["deliverable_tree"], attempt["dod"], attempt["state"]) == \
        (new_tree, None, "in_review")
    assert {w: (v["verdict"], v["current"]) for w, v in attempt["verdicts"].items()} == \
        {"platform": ("pass", False), "ref-reviewer": ("pass", False)}
    assert "(stale)" in cli("mission", "status", mission_id).out

    worker.process(queued)
    fresh = cli("mission", "status", mission_id, "--json").json["attempts"][0]
    assert (fresh["deliverable_tree"], fresh["dod"], fresh["state"], fresh["reworks"]) == \
        (new_tree, "pass", "awaiting_acceptance", 1)
    assert {w: (v["verdict"], v["current"]) for w, v in fresh["verdicts"].items()} == \
        {"platform": ("pass", True), "ref-reviewer": ("pass", True)}
    tip = repo.ref(f"{ATTEMPT}{agent}")
    assert tip is not None
    for path in ("verdicts/platform.yaml", "verdicts/ref-reviewer.yaml"):
        assert len(changes(repo, tip, path)) == 2  # one verdict per deliverable tree
        assert repo.subtree_id(writer_of(repo, tip, path).id, "deliverable") == new_tree


# -- `aismm process` is idempotent, also when two run at once ----------------------------------
def test_process_is_idempotent_and_concurrency_safe(hub: Hub, cli: Callable[..., Result]) -> None:
    worker.process(hub)
    queued = daemon(hub)
    missions = {
        create(hub, "code_review", CODE_INPUTS, "ref-code-reviewer"): "ref-code-reviewer",
        create(hub, "schema_design", CATALOG / "schema_design" / "benchmark" / "customer" /
               "inputs", "ref-schema-designer"): "ref-schema-designer",
        create(hub, "code_review", CODE_INPUTS, "careless", tier="T0", price=100): "careless",
    }
    for mission_id in missions:
        assert " delivered " in delivery.dispatch(queued, mission_id)[0]
    with Store(hub.db_path) as store:
        assert store.pending() >= len(missions)  # at least every delivery

    env = {**os.environ, **GIT_ENV, "AISMM_NOW": START, "AISMM_HUB": str(hub.root)}
    procs = [subprocess.Popen([sys.executable, "-m", "aismm", "process", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    lines = [line for out, _ in outputs for line in json.loads(out)["lines"]]
    assert sorted(line.split(":")[1].strip() for line in lines if " DoD on " in line) == \
        sorted(f"platform DoD on {a}" for a in missions.values())

    again = cli("process", "--json")
    assert (again.code, again.json) == (0, {"lines": []})
    assert cli("process").out == "nothing to do\n"

    with Store(hub.db_path) as store:
        rows = [r for r in store.events() if r.repo.removeprefix("missions/")
                .removesuffix(".git") in missions]
        assert store.pending() == 0
    assert {r.status for r in rows} == {"done"}
    deliveries = [r for r in rows if r.pusher in missions.values()]
    assert len(deliveries) == len(missions)
    assert all(" DoD on " in json.loads(r.result or "{}")["lines"][0] for r in deliveries)
    for mission_id, agent in missions.items():
        repo, _ = mission.open_mission(hub, mission_id)
        tip = repo.ref(f"{ATTEMPT}{agent}")
        assert tip is not None
        assert len(changes(repo, tip, "verdicts/platform.yaml")) == 1
        assert len(changes(repo, tip, "verdicts/ref-reviewer.yaml")) == 1


# -- post-receive: an external agent's push returns with its verdicts committed ----------------
def test_push_by_external_agent_returns_with_verdicts(hub: Hub, cli: Callable[..., Result],
                                                      tmp_path: Path) -> None:
    key = tmp_path / "ext" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ext", "-f", str(key)],
                   check=True, capture_output=True)
    added = cli("actor", "add", "ext", "--role", "specialist", "--pubkey",
                str(key.with_suffix(".pub")), "--json")
    assert added.code == 0, added.err
    assert added.json["hosted"] is False
    created = cli("mission", "create", "--contract", "contract.code_review", "--client", "carol",
                  "--inputs", str(CODE_INPUTS), "--agent", "ext", "--tier", "T0", "--price",
                  "150", "--json")
    assert created.code == 0, created.err
    mission_id = created.json["id"]
    worker.process(hub)  # post-receive drains the whole outbox; start from an empty one

    clone = tmp_path / "clone"
    assert git("clone", "-q", created.json["url"], str(clone)).returncode == 0
    assert git("switch", "-q", "attempts/ext", cwd=clone).returncode == 0
    (clone / "deliverable").mkdir()
    shutil.copy(GOLDEN, clone / "deliverable" / "findings.json")
    git("add", "deliverable", cwd=clone)
    done = git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
               "-m", "Deliver findings", cwd=clone)
    assert done.returncode == 0, done.stderr
    pushed = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    tree = git("rev-parse", "HEAD:deliverable", cwd=clone).stdout.strip()

    push = git("push", "origin", "attempts/ext", cwd=clone, env={"AISMM_NOW": START})
    assert push.returncode == 0, push.stderr
    remote = [line.removeprefix("remote: ").rstrip() for line in push.stderr.splitlines()
              if line.startswith("remote: aismm:")]
    assert remote[0] == "aismm: platform DoD on ext: PASS (100/100)"
    assert remote[1].startswith("aismm: reviewer ref-reviewer on ext: PASS (")
    assert len(remote) == 2

    # The verdicts were committed before the push returned.
    repo = Repo(hub.mission_path(mission_id))
    tip = repo.ref(f"{ATTEMPT}ext")
    assert tip is not None and tip != pushed and repo.is_ancestor(pushed, tip)
    assert repo.subtree_id(tip, "deliverable") == tree
    verify_env = {"AISMM_NOW": START}
    for path, principal in (("verdicts/platform.yaml", "platform@aismm.invalid"),
                            ("verdicts/ref-reviewer.yaml", "ref-reviewer@aismm.invalid")):
        written = writer_of(repo, tip, path)
        assert f"deliverable_tree: {tree}\n" in (repo.read(tip, path) or b"").decode()
        checked = git("verify-commit", "-v", written.id, cwd=repo.path, env=verify_env)
        assert checked.returncode == 0, checked.stderr
        assert f'Good "git" signature for {principal}' in checked.stderr
    own = git("verify-commit", pushed, cwd=repo.path)
    assert own.returncode == 0 and 'Good "git" signature for ext@aismm.invalid' in own.stderr
    st = cli("mission", "status", mission_id, "--json").json["attempts"][0]
    assert (st["state"], st["dod"]) == ("awaiting_acceptance", "pass")
    with Store(hub.db_path) as store:
        rows = store.events(f"missions/{mission_id}.git")
    assert {r.status for r in rows} == {"done"}
    assert [(r.old, r.result) for r in rows if r.new == pushed] == \
        [(created.json["main"], json.dumps({"lines": remote}, sort_keys=True))]
