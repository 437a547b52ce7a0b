"""One key, one actor: ``aismm actor add`` refuses a public key another actor already holds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aismm.core.actor import Actor
from aismm.core.errors import GateRejection
from aismm.core.model import dump_yaml
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import registrar
from aismm.state import registry
from tests import clikit
from tests.clikit import Result

START = "2026-01-01T00:00:00Z"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Path:
    monkeypatch.setenv("AISMM_NOW", START)
    path = tmp_path / "hub"
    assert clikit.run(path, capsys, "hub", "init", str(path)).code == 0
    return path


def ssh_key(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub")


def state(hub: Path) -> tuple[str | None, str, list[str]]:
    """What a refused ``actor add`` must leave alone: registry main, allowed_signers, keys."""
    return (Repo(hub / "registry.git").ref("refs/heads/main"),
            (hub / "allowed_signers").read_text(),
            sorted(p.name for p in (hub / "keys").iterdir()))


def refused(result: Result, line: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.err_lines == [line]


def test_the_platform_key_cannot_be_registered_for_another_actor(
        hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = state(hub)
    result = clikit.run(hub, capsys, "actor", "add", "mallory", "--role", "client", "--pubkey",
                        str(hub / "keys" / "platform.pub"))
    refused(result, "aismm: actor add: key already belongs to platform; generate a new key "
                    "for mallory")
    assert state(hub) == before
    assert clikit.run(hub, capsys, "actor", "show", "mallory").code == 2
    # the platform still signs the hub's writes
    assert clikit.run(hub, capsys, "actor", "add", "zed", "--role", "client", "--hosted"
                      ).code == 0


def test_an_external_key_is_one_actor_whatever_its_comment(
        hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub = ssh_key(tmp_path / "ext", "first")
    assert clikit.run(hub, capsys, "actor", "add", "ext", "--role", "specialist", "--pubkey",
                      str(pub)).code == 0
    again = tmp_path / "again.pub"
    again.write_text(pub.read_text().replace(" first", " another-comment"))
    before = state(hub)
    for args in (("--role", "reviewer", "--pubkey", str(again)),
                 ("--role", "client", "--owner", "ext", "--pubkey", str(pub))):
        refused(clikit.run(hub, capsys, "actor", "add", "ext2", *args),
                "aismm: actor add: key already belongs to ext; generate a new key for ext2")
        assert state(hub) == before
    fresh = ssh_key(tmp_path / "fresh", "fresh")
    assert clikit.run(hub, capsys, "actor", "add", "ext2", "--role", "reviewer", "--pubkey",
                      str(fresh)).code == 0


def test_key_holder_includes_revoked_actors(tmp_path: Path) -> None:
    key = ssh_key(tmp_path / "k", "k").read_text()
    gone = Actor(id="gone", roles=["client"], owner="gone", key=key, revoked=True)
    assert registry.key_holder({"gone": gone}, key) == gone
    assert registry.key_holder({"gone": gone}, key, besides="gone") is None


def test_a_registry_push_with_a_duplicate_key_is_refused_by_the_gate(
        hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Hub(hub)
    platform_key = (hub / "keys" / "platform.pub").read_text().strip()
    doc = Actor(id="mallory", roles=["client"], owner="mallory", key=platform_key)
    tip = Repo(h.registry_path).ref("refs/heads/main")
    with pytest.raises(GateRejection, match="key already belongs to platform"):
        registrar.commit_files(h, {"actors/mallory.yaml": dump_yaml(doc.model_dump(mode="json"))
                                  .encode()}, "Register mallory\n", h.config.platform)
    assert Repo(h.registry_path).ref("refs/heads/main") == tip
