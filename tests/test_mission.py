"""Mission creation: the repository of DESIGN §5, and bad input that changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from aismm.core.contract import digest
from aismm.core.errors import ActorError, ContractError, LedgerError, UsageError
from aismm.core.model import load_yaml
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import mission, registrar
from aismm.state import registry
from tests.conftest import git
from tests.hubkit import copy_hub

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers" / "inputs"


@pytest.fixture(scope="module")
def template(reference_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's assessed reference hub, plus this module's clients and actors."""
    hub = copy_hub(reference_hub, tmp_path_factory.mktemp("m") / "hub")
    registrar.add_actor(hub, "carol", ["client"], "carol-corp", None, True)
    registrar.add_actor(hub, "poor", ["client"], None, None, True)
    registrar.add_actor(hub, "bob", ["specialist"], "carol-corp", None, True)
    registrar.add_actor(hub, "rita", ["reviewer"], "carol-corp", None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("carol", 100_000, cause="seed")
        ledger.deposit("poor", 10, cause="seed")
    return hub.root


@pytest.fixture
def hub(template: Path, tmp_path: Path) -> Hub:
    """Each test's own copy of the template."""
    return copy_hub(template, tmp_path / "own" / "hub")


def state(hub: Hub) -> dict[str, Any]:
    """Everything a failed creation must leave untouched."""
    with Ledger(hub.db_path, hub.clock) as ledger:
        balances = ledger.balances()
        transfers = len(ledger.history())
    return {"missions": sorted(p.name for p in hub.missions_dir.iterdir()),
            "registry": Repo(hub.registry_path).refs(), "balances": balances,
            "transfers": transfers, "keys": sorted(p.name for p in hub.keys_dir.iterdir())}


def create(hub: Hub, **kw: Any) -> mission.Created:
    args: dict[str, Any] = {"contract_ref": "contract.code_review", "client": "carol",
                            "inputs": TASK, "price": None, "tier": "T1",
                            "agents": ["ref-code-reviewer"]}
    args.update(kw)
    return mission.create(hub, **args)


def test_main_holds_exactly_the_mission_files(hub: Hub) -> None:
    created = create(hub)
    repo = Repo(created.path)
    files = sorted(repo.flatten(created.main))
    contract, frozen, sha = registry.resolve_contract(hub, "contract.code_review")
    expected = sorted(["mission.yaml", "README.md", "contract.yaml", *contract.schema_paths(),
                       *(f"inputs/{p.relative_to(TASK).as_posix()}" for p in TASK.rglob("*")
                         if p.is_file())])
    assert files == expected
    doc = load_yaml(repo.read(created.main, "mission.yaml") or b"", "mission.yaml")
    assert doc["contract"] == {"ref": "contract.code_review@1.0.0", "sha256": sha}
    pinned = {p: repo.read(created.main, p) or b"" for p in ["contract.yaml",
                                                             *contract.schema_paths()]}
    assert digest(pinned) == sha
    assert doc["client"] == "carol" and doc["tier"] == "T1" and doc["price"] == 400
    assert doc["fee"] == 40 and doc["fee_bp"] == 1000
    assert doc["deadline"] == "2026-01-04T00:00:00Z"
    refs = repo.refs()
    assert refs == {"refs/heads/main": created.main, "refs/heads/accepted": created.main,
                    "refs/heads/attempts/ref-code-reviewer": created.main}
    readme = (repo.read(created.main, "README.md") or b"").decode()
    assert created.doc.id in readme and "deliverable/findings.json" in readme


def test_repository_is_signed_configured_hooked_and_fsck_clean(hub: Hub) -> None:
    created = create(hub)
    path = str(created.path)
    res = git("-C", path, "-c", "gpg.format=ssh", "-c",
              f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}", "verify-commit", "-v",
              created.main, check=False)
    assert res.returncode == 0 and 'signature for carol@aismm.invalid' in res.stderr
    assert git("-C", path, "fsck", "--strict", "--no-dangling", check=False).returncode == 0
    for key, value in (("receive.fsckobjects", "true"), ("receive.denynonfastforwards", "true"),
                       ("receive.denydeletes", "true"), ("receive.advertisepushoptions", "true"),
                       ("core.logallrefupdates", "always")):
        assert git("-C", path, "config", key).stdout.strip() == value
    assert int(git("-C", path, "config", "receive.maxinputsize").stdout) > 0
    import sys

    native = (hub.root / "run" / "aismm-hook").is_file()  # where a C compiler exists
    for hook in ("pre-receive", "post-receive"):
        text = (created.path / "hooks" / hook).read_text()
        assert f"# aismm-hook: {hook}" in text and sys.executable in text
        assert text.startswith("#!/bin/sh\n" if native else f"#!{sys.executable} -S\n")


def test_escrow_is_funded_with_price_plus_fee(hub: Hub) -> None:
    with Ledger(hub.db_path, hub.clock) as ledger:
        before = ledger.balance("client:carol")
    created = create(hub, tier="T0")
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.balance(f"escrow:{created.doc.id}") == 400 + 8
        assert ledger.balance("client:carol") == before - 408
    assert created.to_dict()["total"] == 408


def test_client_can_sign_with_its_own_key_file(hub: Hub, tmp_path: Path) -> None:
    from aismm.core.signing import read_private_key_file

    shutil.copy(hub.key_path("carol"), tmp_path / "carol.key")
    created = create(hub, key=read_private_key_file(tmp_path / "carol.key"))
    assert created.path.is_dir()
    wrong = read_private_key_file(hub.key_path("poor"))
    before = state(hub)
    with pytest.raises(ActorError, match="does not match the key registered for carol"):
        create(hub, key=wrong)
    assert state(hub) == before


def _bad_inputs(tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(TASK, bad)
    data = json.loads((bad / "request.json").read_text())
    data["language"] = "cobol"
    (bad / "request.json").write_text(json.dumps(data))
    return bad


def _missing_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "missing"
    folder.mkdir()
    (folder / "request.json").write_text((TASK / "request.json").read_text())
    return folder


def _extra_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "extra"
    shutil.copytree(TASK, folder)
    (folder / "notes.txt").write_text("not declared by the contract")
    return folder


@pytest.mark.parametrize(("kw", "error", "message"), [
    ({"contract_ref": "contract.nope"}, ContractError, "contract.nope: no such contract"),
    ({"contract_ref": "not-a-ref"}, ContractError, "not a contract reference"),
    ({"client": "nobody"}, ActorError, "nobody: unknown actor"),
    ({"client": "bob"}, ActorError, "lacks the client role"),
    ({"agents": ["carol"]}, ActorError, "--agent carol: lacks the specialist role"),
    ({"agents": ["nobody"]}, ActorError, "nobody: unknown actor"),
    ({"agents": ["sloppy-coder"]}, ActorError, "not listed"),
    ({"price": -5}, UsageError, "--price -5: sloppy|must not be negative|asks"),
    ({"price": 100}, UsageError, "ref-code-reviewer asks 400"),
    ({"price": 999_999}, ContractError, "outside contract.code_review@1.0.0's range"),
    ({"tier": "T9"}, ContractError, "allows only T0, T1, T2"),
    ({"reviewers": ["rita"]}, ActorError, "not independent"),
    ({"reviewers": ["bob"]}, ActorError, "lacks the reviewer role"),
    ({"deadline": "three days"}, UsageError, "not an ISO 8601 duration"),
    ({"client": "poor"}, LedgerError, "client:poor"),
    ({"agents": []}, UsageError, "assign at least one agent"),
])
def test_bad_input_is_refused_and_changes_nothing(hub: Hub, kw: dict[str, Any],
                                                  error: type[Exception], message: str) -> None:
    before = state(hub)
    if kw.get("price") == -5:
        kw = {**kw, "agents": ["bob"], "tier": "T0"}
    with pytest.raises(error, match=message):
        create(hub, **kw)
    assert state(hub) == before


@pytest.mark.parametrize(("maker", "message"), [
    (_bad_inputs, r"request.json: fails the contract schema \(language: 'python' was expected\)"),
    (_missing_inputs, r"inputs/src/\*\.py: required input missing"),
    (_extra_inputs, "inputs/notes.txt: not an allowed input path; provide only "
                    "inputs/request.json, inputs/src/"),
])
def test_inputs_are_validated_against_the_contract(hub: Hub, tmp_path: Path, maker: Any,
                                                   message: str) -> None:
    before = state(hub)
    with pytest.raises(ContractError, match=message):
        create(hub, inputs=maker(tmp_path))
    assert state(hub) == before


def test_symlinked_input_is_refused(hub: Hub, tmp_path: Path) -> None:
    folder = tmp_path / "links"
    shutil.copytree(TASK, folder)
    (folder / "src" / "evil.py").symlink_to("/etc/passwd")
    before = state(hub)
    with pytest.raises(ContractError, match="symbolic links are not accepted"):
        create(hub, inputs=folder)
    assert state(hub) == before


def test_list_and_show(hub: Hub) -> None:
    from aismm.services import lifecycle

    created = create(hub, tier="T0")
    rows = {r.id: r for r in lifecycle.list_missions(hub)}
    assert rows[created.doc.id].state == "assigned"
    assert rows[created.doc.id].agents == ("ref-code-reviewer",)
    shown = mission.show(hub, created.doc.id)
    assert shown["refs"]["refs/heads/main"] == {"id": created.main, "signer": "carol"}
    assert "mission.yaml" in shown["files"]
    assert created.path.name == f"{created.doc.id}.git"
