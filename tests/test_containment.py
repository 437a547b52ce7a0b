"""Containment end to end: agent code pushed by git, run by the hub's DoD, reaches nothing of the
hub — with the hub outside /tmp, where a private /tmp would not hide it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm import mission
from aismm.git import Repo
from hubkit import ROOT, Kit, isolated_env, make_kit

TASK = ROOT / "contracts" / "unit_tests" / "benchmark" / "mathx"


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    top = Path(tempfile.mkdtemp(prefix="aismm-containment-", dir="/var/tmp"))
    try:
        with isolated_env(top / "home"):
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
    from aismm import assessment, registry
    from aismm.actor import Manifest

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
    ok, detail = assessment.run_agent(hub, manifest, checkout, {"AISMM_ACTOR": "bob"})
    assert ok, detail
    seen = json.loads((checkout / "deliverable" / "seen.json").read_text())
    assert seen[str(hub.root)] is False
    assert seen[f"{hub.root}/keys/platform.key"] is False and seen[f"{hub.root}/hub.db"] is False
    assert "var" not in seen["root"]
    del registry
