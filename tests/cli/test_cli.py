"""The CLI: exit codes, one-line errors without tracebacks, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def aismm(*args: str, hub: Path | None = None, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    if hub is not None:
        full["AISMM_HUB"] = str(hub)
    return subprocess.run([sys.executable, "-m", "aismm", *args], capture_output=True,
                          text=True, env=full, cwd=ROOT)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "hub"
    done = aismm("hub", "init", str(path), env={"GIT_CONFIG_GLOBAL": "/dev/null"})
    assert done.returncode == 0, done.stderr
    return path


def one_line_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("aismm: ") and text in lines[0]
    assert "Traceback" not in done.stderr


def test_no_hub_is_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AISMM_HUB"}
    done = subprocess.run([sys.executable, "-m", "aismm", "actor", "list"], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    one_line_error(done, 2, "no hub given; pass --hub DIR or set AISMM_HUB")


def test_not_a_hub_is_exit_2(tmp_path: Path) -> None:
    one_line_error(aismm("--hub", str(tmp_path), "actor", "list"), 2, "not an AISMM hub")


def test_init_existing_hub_is_exit_2(hub: Path) -> None:
    one_line_error(aismm("hub", "init", str(hub)), 2, "already a hub")


def test_unknown_actor_is_exit_2(hub: Path) -> None:
    one_line_error(aismm("actor", "show", "nobody", hub=hub), 2, "nobody: unknown actor")


def test_unknown_mission_is_exit_2(hub: Path) -> None:
    one_line_error(aismm("mission", "status", "nope-1234", hub=hub), 2,
                   "nope-1234: no such mission")
    one_line_error(aismm("mission", "status", "../registry", hub=hub), 2, "no such mission")


def test_bad_flag_is_exit_2(hub: Path) -> None:
    done = aismm("mission", "create", "--tier", "T7", hub=hub)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_actor_json_roundtrip(hub: Path) -> None:
    done = aismm("actor", "add", "zed", "--role", "client", "--hosted", "--json", hub=hub)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["id"] == "zed" and data["hosted"] is True
    assert data["key_file"] == str(hub / "keys" / "zed.key")
    shown = json.loads(aismm("actor", "show", "zed", "--json", hub=hub).stdout)
    assert shown["fingerprint"].startswith("SHA256:")
    listed = json.loads(aismm("actor", "list", "--json", hub=hub).stdout)
    assert {a["id"] for a in listed} >= {"platform", "arbiter", "zed"}


def test_contract_commands(hub: Path) -> None:
    rows = json.loads(aismm("contract", "list", "--json", hub=hub).stdout)
    assert [r["ref"] for r in rows] == ["contract.code_review@1.0.0",
                                        "contract.module_quality@1.0.0",
                                        "contract.schema_design@1.0.0",
                                        "contract.unit_tests@1.0.0"]
    shown = json.loads(aismm("contract", "show", "contract.unit_tests", "--json", hub=hub).stdout)
    assert shown["id"] == "contract.unit_tests" and len(shown["sha256"]) == 64
    ok = aismm("contract", "validate", str(ROOT / "contracts" / "schema_design"))
    assert ok.returncode == 0 and "contract.schema_design@1.0.0: valid" in ok.stdout


def test_contract_validate_names_file_and_field(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "c"
    shutil.copytree(ROOT / "contracts" / "code_review", folder)
    text = (folder / "contract.yaml").read_text().replace("version: 1.0.0", "version: one")
    (folder / "contract.yaml").write_text(text)
    done = aismm("contract", "validate", str(folder))
    assert done.returncode == 2
    assert f"{folder / 'contract.yaml'}: version: String should match pattern" in done.stderr
    (folder / "contract.yaml").write_text("id: [unclosed\n")
    done = aismm("contract", "validate", str(folder))
    one_line_error(done, 2, "contract.yaml: line 2: malformed YAML")
    assert "malformed YAML" in done.stderr


def test_wallet_and_ledger(hub: Path) -> None:
    aismm("actor", "add", "payer", "--role", "client", "--hosted", hub=hub)
    done = aismm("wallet", "deposit", "payer", "250", "--json", hub=hub)
    assert json.loads(done.stdout)["balance"] == 250
    one_line_error(aismm("wallet", "deposit", "payer", "--", "-3", hub=hub), 2, "must be a positive")
    one_line_error(aismm("wallet", "deposit", "ghost", "3", hub=hub), 2, "ghost: unknown actor")
    bal = json.loads(aismm("wallet", "balance", "payer", "--json", hub=hub).stdout)
    assert bal["wallet"] == 250
    check = aismm("ledger", "check", "--json", hub=hub)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True
    history = json.loads(aismm("ledger", "history", "client:payer", "--json", hub=hub).stdout)
    assert [t["amount"] for t in history] == [250]


def test_debug_shows_traceback_only_when_asked(tmp_path: Path) -> None:
    quiet = aismm("--hub", str(tmp_path), "actor", "list")
    loud = aismm("--hub", str(tmp_path), "actor", "list", env={"AISMM_DEBUG": "1"})
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    assert quiet.returncode == loud.returncode == 2


def test_schema_export(tmp_path: Path) -> None:
    done = aismm("schema", "export", str(tmp_path / "s"))
    assert done.returncode == 0
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["actor.schema.json", "contract.schema.json", "decision.schema.json",
                     "manifest.schema.json", "mission.schema.json", "outcome.schema.json",
                     "request.schema.json", "routing.schema.json", "verdict.schema.json"]


def test_external_provider_registers_a_manifest_with_its_own_key(hub: Path, tmp_path: Path
                                                                  ) -> None:
    for name in ("prov", "stranger", "pbot"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / name)], check=True)
    assert aismm("actor", "add", "prov", "--role", "client", "--pubkey",
                 str(tmp_path / "prov.pub"), hub=hub).returncode == 0
    assert aismm("actor", "add", "pbot", "--role", "specialist", "--owner", "prov", "--pubkey",
                 str(tmp_path / "pbot.pub"), hub=hub).returncode == 0
    manifest = tmp_path / "pbot.yaml"
    manifest.write_text("schema_version: 1\nid: pbot\nowner: prov\nroles: [specialist]\n"
                        "contracts: [contract.schema_design@1.0.0]\nprice: 120\ncapacity: 2\n"
                        "runtime: {kind: git}\n")
    registry_tip = ["git", "-C", str(hub / "registry.git"), "rev-parse", "HEAD"]
    before = subprocess.run(registry_tip, capture_output=True, text=True).stdout
    forged = aismm("agent", "register", str(manifest), "--as", "prov", "--key",
                   str(tmp_path / "stranger"), hub=hub)
    assert forged.returncode == 1
    assert "signed by an unregistered or revoked key" in forged.stderr
    assert subprocess.run(registry_tip, capture_output=True, text=True).stdout == before
    done = aismm("agent", "register", str(manifest), "--as", "prov", "--key",
                 str(tmp_path / "prov"), "--json", hub=hub)
    assert done.returncode == 0, done.stderr
    shown = json.loads(aismm("agent", "show", "pbot", "--json", hub=hub).stdout)
    assert shown["manifest"]["runtime"]["kind"] == "git" and shown["assessment"] is None
