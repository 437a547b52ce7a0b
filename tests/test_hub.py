"""The hub: atomic init, layout, refusal to re-init, registry signatures, fsck-clean repos."""

from __future__ import annotations

from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.core.errors import ActorError, UsageError
from aismm.infra.hub import Hub
from aismm.services import registrar
from aismm.services.hubs import init_hub
from aismm.state import registry
from tests.conftest import git

CLOCK = "2026-01-01T00:00:00Z"


@pytest.fixture()
def hub(tmp_path: Path) -> Hub:
    return init_hub(tmp_path / "hub", clock=FixedClock(CLOCK))


def test_layout_of_design_section_3(hub: Hub) -> None:
    names = sorted(p.name for p in hub.root.iterdir())
    assert names == ["allowed_signers", "hub.db", "hub.yaml", "keys", "missions",
                     "registry.git", "run"]
    assert sorted(p.name for p in hub.keys_dir.glob("*.key")) == ["arbiter.key", "platform.key"]
    for key in hub.keys_dir.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert hub.keys_dir.stat().st_mode & 0o777 == 0o700


def test_registry_publishes_catalog_in_platform_signed_commits(hub: Hub) -> None:
    assert sorted(registry.contracts(hub)) == [
        "contract.code_review@1.0.0", "contract.module_quality@1.0.0",
        "contract.schema_design@1.0.0", "contract.unit_tests@1.0.0"]
    log = git("-C", str(hub.registry_path), "log", "--format=%H").stdout.split()
    assert len(log) == 2
    for commit in log:
        res = git("-C", str(hub.registry_path), "-c", "gpg.format=ssh", "-c",
                  f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}", "verify-commit",
                  "-v", commit, check=False)
        assert res.returncode == 0, res.stderr
        assert "Good \"git\" signature for platform@aismm.invalid" in res.stderr
    fsck = git("-C", str(hub.registry_path), "fsck", "--strict", "--no-dangling", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_init_twice_is_refused_and_changes_nothing(hub: Hub) -> None:
    before = sorted(str(p) for p in hub.root.rglob("*"))
    with pytest.raises(UsageError, match="already a hub"):
        init_hub(hub.root)
    assert sorted(str(p) for p in hub.root.rglob("*")) == before


def test_init_into_nonempty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        init_hub(tmp_path / "x")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["file"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.init-")]


def test_not_a_hub_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not an AISMM hub"):
        Hub(tmp_path)


def test_actor_add_hosted_and_external(hub: Hub, tmp_path: Path) -> None:
    import subprocess

    alice = registrar.add_actor(hub, "alice", ["client"], None, None, True)
    assert alice.hosted and hub.key_path("alice").stat().st_mode & 0o777 == 0o600
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    pub = (tmp_path / "k.pub").read_text()
    ext = registrar.add_actor(hub, "ext-agent", ["specialist"], "acme", pub, False)
    assert ext.owner == "acme" and not hub.key_path("ext-agent").exists()
    assert "ext-agent@aismm.invalid" in hub.allowed_signers_path.read_text()
    assert set(registry.actors(hub)) == {"platform", "arbiter", "alice", "ext-agent"}


@pytest.mark.parametrize(("args", "message"), [
    (("alice", ["client"], None, None, True), "already registered"),
    (("Bad_Id", ["client"], None, None, True), "String should match pattern"),
    (("newbie", ["platform"], None, None, True), "platform role belongs to the hub"),
    (("newbie", ["client"], None, "ssh-rsa AAAA", False), "not an ssh-ed25519"),
    (("newbie", ["client"], None, None, False), "exactly one of --pubkey FILE or --hosted"),
])
def test_actor_add_bad_input_changes_nothing(hub: Hub, args: tuple, message: str) -> None:
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    tip = git("-C", str(hub.registry_path), "rev-parse", "HEAD").stdout
    keys = sorted(p.name for p in hub.keys_dir.iterdir())
    with pytest.raises((ActorError, UsageError), match=message):
        registrar.add_actor(hub, *args)
    assert git("-C", str(hub.registry_path), "rev-parse", "HEAD").stdout == tip
    assert sorted(p.name for p in hub.keys_dir.iterdir()) == keys
