"""Containment end to end: agent code pushed by git, run by the hub's DoD, reaches nothing of the
hub — with the hub outside /tmp, where a private /tmp would not hide it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubkit import ROOT, Kit, make_kit

from aismm.infra.git import Repo
from aismm.services import mission

TASK = ROOT / "contracts" / "unit_tests" / "benchmark" / "mathx"


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    top = Path(tempfile.mkdtemp(prefix="aismm-containment-", dir="/var/tmp"))
    try:
        yield make_kit(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _snoop(hub_root: Path, canary: Path) -> str:
    """A test file that tries to read the hub's secrets and write outside, at import."""
    targets = [hub_root / "keys" / "platform.key", hub_root / "hub.db", hub_root / "keys",
               hub_root / "missions", hub_root]
    return f'''
import os
import module
seen = []
for p in {[str(t) for t in targets]!r}:
    try:
        seen.append(p + "=" + (repr(os.listdir(p)) if os.path.isdir(p) else open(p, "rb").read(60).hex()))
    except OSError as exc:
        seen.append(p + "=" + type(exc).__name__)
try:
    open({str(canary)!r}, "w").write("escaped")
    seen.append("CANARY-WRITTEN")
except OSError as exc:
    seen.append("canary=" + type(exc).__name__)
print("SNOOP", seen)

def test_one():
    assert False, "SNOOP " + repr(seen)
'''


def test_dod_of_a_pushed_deliverable_cannot_read_or_write_the_hub(kit: Kit) -> None:
    hub = kit.hub
    canary = kit.root / "canary"
    created = mission.create(hub, contract_ref="contract.unit_tests", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T1", agents=["ext"])
    clone = kit.clone(created, "attempts/ext")
    report = {"schema_version": 1, "module": "inputs/module.py", "tests": 1, "functions_covered": []}
    clone.commit(kit.key("ext"), "deliver", {
        "deliverable/test_module.py": _snoop(hub.root, canary),
        "deliverable/report.json": json.dumps(report)})
    push = clone.push("attempts/ext")
    assert push.returncode == 0, push.text
    repo = Repo(created.path)
    tip = repo.ref("refs/heads/attempts/ext")
    verdict = (repo.read(tip, "verdicts/platform.yaml") or b"").decode()
    assert "verdict: fail" in verdict  # the DoD ran and judged the delivery
    key_hex = (hub.root / "keys" / "platform.key").read_bytes()[:60].hex()
    db_hex = (hub.root / "hub.db").read_bytes()[:60].hex()
    said = verdict + push.text
    assert "SNOOP" in said and "FileNotFoundError" in said  # the snooping code did run
    assert key_hex not in said and db_hex not in said and "missions=[" not in said
    assert "CANARY-WRITTEN" not in said and not canary.exists()


def test_a_hosted_agent_sees_no_hub(kit: Kit, tmp_path: Path) -> None:
    from aismm.core.actor import Manifest
    from aismm.services import delivery
    from aismm.state import registry

    hub = kit.hub
    script = (
        "import os, json\n"
        f"hub = {str(hub.root)!r}\n"
        "out = {p: os.path.exists(p) for p in [hub, hub + '/keys/platform.key', hub + '/hub.db']}\n"
        "out['root'] = sorted(os.listdir('/'))\n"
        "os.makedirs('deliverable', exist_ok=True)\n"
        "open('deliverable/seen.json', 'w').write(json.dumps(out))\n"
    )
    manifest = Manifest.model_validate({
        "schema_version": 1, "id": "bob", "owner": "acme", "contracts": ["contract.unit_tests"],
        "roles": ["specialist"], "price": 100, "capacity": 4,
        "runtime": {"kind": "command", "argv": ["{python}", "-c", script],
                    "timeout_seconds": 30}})
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    ok, detail = delivery.run_agent(hub, manifest, checkout, {"AISMM_ACTOR": "bob"})
    assert ok, detail
    seen = json.loads((checkout / "deliverable" / "seen.json").read_text())
    assert seen[str(hub.root)] is False
    assert seen[f"{hub.root}/keys/platform.key"] is False and seen[f"{hub.root}/hub.db"] is False
    assert "var" not in seen["root"]
    del registry


BROKEN = "namespaces" if os.geteuid() == 0 else "namespaces+uid"  # a level that cannot work here


def test_a_broken_sandbox_is_a_hub_fault_never_the_agents(kit: Kit, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from hubkit import GOLDEN

    from aismm.infra.store import Store

    hub = kit.hub
    created = kit.mission(("ext",), "T1")
    clone = kit.clone(created, "attempts/ext")
    clone.commit(kit.key("ext"), "deliver", {"deliverable/findings.json": GOLDEN.read_bytes()})
    monkeypatch.setenv("AISMM_SANDBOX", BROKEN)
    push = clone.push("attempts/ext")

    assert push.returncode == 0, push.text  # the push itself was judged and landed
    assert f"aismm: sandbox: isolation '{BROKEN}' does not work here" in push.text
    assert "the push landed but was not assessed" in push.text
    repo = Repo(created.path)
    tip = repo.ref("refs/heads/attempts/ext")
    assert repo.read(tip, "verdicts/platform.yaml") is None  # no verdict for a hub fault
    with Store(hub.db_path) as store:
        name = f"missions/{created.doc.id}.git"
        assert [e.status for e in store.events(name) if e.new == tip] == ["pending"]
        assert not [r for r in store.executions() if r["mission"] == created.doc.id]

    cli = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "process"],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "AISMM_SANDBOX": BROKEN})
    assert cli.returncode == 3 and cli.stdout == ""
    assert cli.stderr.startswith(f"aismm: sandbox: isolation '{BROKEN}' does not work here")
    assert len(cli.stderr.splitlines()) == 1
    assert repo.read(repo.ref("refs/heads/attempts/ext"), "verdicts/platform.yaml") is None

    monkeypatch.delenv("AISMM_SANDBOX")
    fixed = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "process"],
                           capture_output=True, text=True, check=False)
    assert fixed.returncode == 0, fixed.stderr
    assert "platform DoD on ext: PASS" in fixed.stdout


def test_hub_init_with_reference_agents_stops_before_anything_on_a_broken_sandbox(
        tmp_path: Path) -> None:
    target = tmp_path / "hub"
    done = subprocess.run([sys.executable, "-m", "aismm", "hub", "init", str(target),
                           "--with-reference-agents"], capture_output=True, text=True,
                          check=False, env={**os.environ, "AISMM_SANDBOX": BROKEN})
    assert done.returncode == 3 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("aismm: sandbox: ")
    assert not target.exists() and list(tmp_path.iterdir()) == []
