"""Key rotation and revocation: history keeps verifying with plain git, new pushes do not pass.

A real hub (``tests/hubkit.py``), real ``git`` pushes through the installed pre-receive gate
and keys made by ``ssh-keygen``. An agent delivers, then its key is rotated or it is revoked
with the CLI (on the system clock, like an operator would): ``git verify-commit`` with the
hub's ``allowed_signers`` still accepts what it signed before, while the gate refuses any new
push signed by the old key, even one whose dates claim to predate the rotation.
"""

from __future__ import annotations

import datetime as dt
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.core.actor import Actor, RetiredKey
from aismm.core.errors import GateRejection
from aismm.core.model import dump_yaml
from aismm.core.signing import allowed_signers
from aismm.infra.git import Repo
from aismm.services import registrar
from aismm.state import registry
from tests import clikit, hubkit
from tests.clikit import Result
from tests.hubkit import Clone, Kit, findings, ssh_keygen

REFUSED = "signed by an unregistered or revoked key"
BACKDATED = {"GIT_AUTHOR_DATE": "2025-06-01T00:00:00Z",
             "GIT_COMMITTER_DATE": "2025-06-01T00:00:00Z"}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


def cli(kit: Kit, capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    return clikit.run(kit.hub.root, capsys, *args)


def verify(kit: Kit, clone: Clone, commit: str) -> tuple[int, str]:
    """``git verify-commit`` with the hub's allowed-signers file: exit status and git's text."""
    proc = clone.git("-c", f"gpg.ssh.allowedSignersFile={kit.hub.allowed_signers_path}",
                     "verify-commit", commit, check=False)
    return proc.returncode, proc.stderr.decode()


def good(kit: Kit, clone: Clone, commit: str, actor: str) -> None:
    code, text = verify(kit, clone, commit)
    assert code == 0, text
    assert f'Good "git" signature for {actor}@aismm.invalid' in text, text


def delivered(kit: Kit, agent: str) -> tuple[Clone, str, str]:
    """A mission for ``agent`` with its signed delivery pushed through the gate."""
    created = kit.mission((agent,))
    branch = f"attempts/{agent}"
    clone = kit.clone(created, branch)
    commit = clone.deliver(kit.key(agent))
    result = clone.push(branch, hooks="pre-receive")
    assert result.returncode == 0 and not result.problems, result.text
    return clone, branch, commit


def refused_push(clone: Clone, branch: str, key: Path, variant: int,
                 env: dict[str, str] | None = None) -> str:
    """A new delivery signed with ``key`` is refused by the gate and changes nothing."""
    before = clone.remote_state()
    clone.write({"deliverable/findings.json": findings(variant)})
    clone.git("add", "-A")
    clone.git(*Clone.sign_args(key), "commit", "-q", "-S", "-m", "deliver again", env=env)
    commit = clone.rev("HEAD")
    result = clone.push(branch, hooks="pre-receive")
    assert result.returncode != 0, result.text
    assert f"aismm: refs/heads/{branch}: commit {commit[:12]}: {REFUSED}; sign with the key " \
           "registered for your actor (`aismm actor show`)" in result.problems, result.text
    assert clone.remote_state() == before
    clone.git("reset", "-q", "--hard", f"origin/{branch}")
    return commit


def accepted_push(clone: Clone, branch: str, key: Path, variant: int) -> str:
    commit = clone.commit(key, "deliver with the new key",
                          {"deliverable/findings.json": findings(variant)})
    result = clone.push(branch, hooks="pre-receive")
    assert result.returncode == 0 and not result.problems, result.text
    assert clone.remote_state().refs[f"refs/heads/{branch}"] == commit
    return commit


def signers_lines(kit: Kit, actor: str) -> list[str]:
    return [line for line in kit.hub.allowed_signers_path.read_text().splitlines()
            if line.startswith(f"{actor}@aismm.invalid ")]


def test_rotating_an_external_key(kit: Kit, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    old_key = kit.add_actor("rota", ["specialist"], "rota-co", external=True)
    clone, branch, earlier = delivered(kit, "rota")
    good(kit, clone, earlier, "rota")

    new_key = ssh_keygen(tmp_path / "new" / "id_ed25519", "rota-2")
    result = cli(kit, capsys, "actor", "rotate", "rota", "--pubkey",
                 str(new_key.with_suffix(".pub")))
    assert result.code == 0, result.err
    assert result.out.startswith("Rotated the key of rota: now SHA256:")
    actor = registry.actors(kit.hub)["rota"]
    old_public = old_key.with_suffix(".pub").read_text().split()[:2]
    assert actor.key.split() == new_key.with_suffix(".pub").read_text().split()[:2]
    assert [r.key.split() for r in actor.retired_keys] == [old_public]
    until = actor.retired_keys[0].valid_before
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", until)

    # allowed_signers: the new key without limit, the old one up to the rotation
    stamp = until.replace("-", "").replace(":", "").replace("T", "")
    assert sorted(signers_lines(kit, "rota")) == sorted([
        f'rota@aismm.invalid namespaces="git" {actor.key}',
        f'rota@aismm.invalid namespaces="git",valid-before="{stamp}" {" ".join(old_public)}'])

    # (a) the earlier delivery still verifies with stock git
    good(kit, clone, earlier, "rota")
    # (b) the old key can push nothing new, not even with dates from before the rotation...
    refused_push(clone, branch, old_key, 1)
    backdated = refused_push(clone, branch, old_key, 2, env=BACKDATED)
    # ...although git alone would take the backdated commit: the window trusts the date the
    # commit claims, which is why the hub's refs (what its gate accepted) are the record
    good(kit, clone, backdated, "rota")
    # (c) the new key is accepted
    later = accepted_push(clone, branch, new_key, 3)
    good(kit, clone, later, "rota")
    # an old-key commit dated after the rotation does not verify with git either
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    stamp_after = after.strftime("%Y-%m-%dT%H:%M:%SZ")
    clone.git(*Clone.sign_args(old_key), "commit", "-q", "-S", "--allow-empty", "-m", "late",
              env={"GIT_AUTHOR_DATE": stamp_after, "GIT_COMMITTER_DATE": stamp_after})
    code, text = verify(kit, clone, "HEAD")
    assert code != 0, text

    shown = cli(kit, capsys, "actor", "show", "rota")
    assert shown.code == 0
    assert f"valid before {until}" in shown.out
    data = cli(kit, capsys, "actor", "show", "rota", "--json").json
    assert data["state"] == "active" and data["rotated_keys"] == 1
    assert data["retired_keys"][0]["valid_before"] == until


def test_rotating_a_hosted_key_replaces_the_key_file(
        kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit.add_actor("hosty", ["specialist"], "hosty-co")
    key_path = kit.hub.key_path("hosty")
    saved = tmp_path / "old" / "id_ed25519"  # a copy of the old key, as a thief would keep it
    saved.parent.mkdir()
    saved.write_bytes(key_path.read_bytes())
    saved.chmod(0o600)
    old_public = key_path.with_suffix(".pub").read_text().strip()
    clone, branch, earlier = delivered(kit, "hosty")

    result = cli(kit, capsys, "actor", "rotate", "hosty", "--hosted")
    assert result.code == 0, result.err
    assert f"key file: {key_path}" in result.out
    actor = registry.actors(kit.hub)["hosty"]
    assert key_path.read_bytes() != saved.read_bytes()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.with_suffix(".pub").read_text().split() == actor.key.split()
    assert [r.key for r in actor.retired_keys] == [old_public]
    leftovers = [p.name for p in kit.hub.keys_dir.iterdir() if "hosty" in p.name]
    assert sorted(leftovers) == ["hosty.key", "hosty.pub"]
    old_pem = saved.read_bytes()
    assert not any(p.read_bytes() == old_pem for p in kit.hub.keys_dir.iterdir())

    good(kit, clone, earlier, "hosty")
    refused_push(clone, branch, saved, 1)
    refused_push(clone, branch, saved, 2, env=BACKDATED)
    later = accepted_push(clone, branch, key_path, 3)
    good(kit, clone, later, "hosty")


def test_revoking_an_actor(kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    key = kit.add_actor("gone", ["specialist"], "gone-co", external=True)
    clone, branch, earlier = delivered(kit, "gone")

    result = cli(kit, capsys, "actor", "revoke", "gone")
    assert result.code == 0, result.err
    actor = registry.actors(kit.hub)["gone"]
    assert actor.revoked and actor.revoked_at is not None
    assert result.out.strip() == f"Revoked gone at {actor.revoked_at}; pushes it signs are " \
                                 "refused from now on"
    stamp = actor.revoked_at.replace("-", "").replace(":", "").replace("T", "")
    assert signers_lines(kit, "gone") == [
        f'gone@aismm.invalid namespaces="git",valid-before="{stamp}" {actor.key}']

    good(kit, clone, earlier, "gone")
    refused_push(clone, branch, key, 1)
    refused_push(clone, branch, key, 2, env=BACKDATED)

    listed = cli(kit, capsys, "actor", "list")
    row = next(line for line in listed.out.splitlines() if line.startswith("gone "))
    assert row.split()[-2:] == ["revoked", "rotated=0"]
    assert next(line for line in listed.out.splitlines() if line.startswith("alice ")
                ).split()[-2:] == ["active", "rotated=0"]
    rows = {r["id"]: r for r in cli(kit, capsys, "actor", "list", "--json").json}
    assert rows["gone"]["state"] == "revoked" and rows["gone"]["revoked"] is True
    assert rows["gone"]["revoked_at"] == actor.revoked_at
    assert rows["alice"]["state"] == "active" and rows["alice"]["rotated_keys"] == 0
    shown = cli(kit, capsys, "actor", "show", "gone", "--json").json
    assert shown["state"] == "revoked" and shown["key_file"] is None
    # a revoked actor cannot be hired or act through the CLI
    with pytest.raises(Exception, match="actor is revoked"):
        kit.mission(("gone",))


def test_revoking_a_hosted_actor_destroys_its_key(kit: Kit,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    kit.add_actor("hgone", ["reviewer"], "hgone-co")
    key_path = kit.hub.key_path("hgone")
    assert cli(kit, capsys, "actor", "revoke", "hgone").code == 0
    assert not key_path.exists() and not key_path.with_suffix(".pub").exists()
    assert signers_lines(kit, "hgone")[0].count("valid-before=") == 1


# -- refusals ----------------------------------------------------------------------------------
def state(kit: Kit) -> tuple[str | None, str, list[str]]:
    """What a refused rotation or revocation must leave alone."""
    return (Repo(kit.hub.registry_path).ref("refs/heads/main"),
            kit.hub.allowed_signers_path.read_text(),
            sorted(f"{p.name}:{p.read_bytes().hex()}" for p in kit.hub.keys_dir.iterdir()))


def refused(kit: Kit, capsys: pytest.CaptureFixture[str], line: str, *args: str) -> None:
    before = state(kit)
    result = cli(kit, capsys, "actor", *args)
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.err_lines == [line]
    assert result.out == ""
    assert state(kit) == before


def test_refusals_change_nothing(kit: Kit, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    one = kit.add_actor("one", ["client"], external=True)
    two = kit.add_actor("two", ["client"], external=True)
    fresh = ssh_keygen(tmp_path / "fresh" / "id_ed25519", "fresh").with_suffix(".pub")
    platform = "aismm: platform: the platform signs every registry write and cannot be {}; " \
               "set up a new hub to replace its key"
    refused(kit, capsys, platform.format("rotated"), "rotate", "platform", "--hosted")
    refused(kit, capsys, platform.format("rotated"), "rotate", "platform", "--pubkey", str(fresh))
    refused(kit, capsys, platform.format("revoked"), "revoke", "platform")
    unknown = "aismm: nobody: unknown actor; see `aismm actor list`"
    refused(kit, capsys, unknown, "rotate", "nobody", "--pubkey", str(fresh))
    refused(kit, capsys, unknown, "revoke", "nobody")

    # one key, one actor: another actor's current key, one's own, and (below) a retired one
    refused(kit, capsys, "aismm: actor rotate: key already belongs to two; generate a new key "
            "for one", "rotate", "one", "--pubkey", str(two.with_suffix(".pub")))
    refused(kit, capsys, "aismm: actor rotate: key already belongs to platform; generate a new "
            "key for one", "rotate", "one", "--pubkey", str(kit.hub.keys_dir / "platform.pub"))
    refused(kit, capsys, "aismm: actor rotate: one already holds or held this key; generate a "
            "new key for one", "rotate", "one", "--pubkey", str(one.with_suffix(".pub")))
    assert cli(kit, capsys, "actor", "rotate", "one", "--pubkey", str(fresh)).code == 0
    refused(kit, capsys, "aismm: actor rotate: key already belongs to one; generate a new key "
            "for two", "rotate", "two", "--pubkey", str(one.with_suffix(".pub")))
    refused(kit, capsys, "aismm: actor rotate: one already holds or held this key; generate a "
            "new key for one", "rotate", "one", "--pubkey", str(one.with_suffix(".pub")))
    refused(kit, capsys, "aismm: actor add: key already belongs to one; generate a new key for "
            "three", "add", "three", "--role", "client", "--pubkey", str(one.with_suffix(".pub")))

    # the key's custody does not change in a rotation
    refused(kit, capsys, "aismm: one: an external actor rotates to a key it made itself; pass "
            "--pubkey FILE", "rotate", "one", "--hosted")
    refused(kit, capsys, "aismm: alice: the hub keeps this actor's key; rotate it with --hosted",
            "rotate", "alice", "--pubkey", str(two.with_suffix(".pub")))
    refused(kit, capsys, "aismm: actor rotate: give exactly one of --pubkey FILE or --hosted",
            "rotate", "two")

    assert cli(kit, capsys, "actor", "revoke", "two").code == 0
    at = registry.actors(kit.hub)["two"].revoked_at
    again = f"aismm: two: already revoked at {at}; register a new actor with `aismm actor add`"
    refused(kit, capsys, again, "revoke", "two")
    refused(kit, capsys, again, "rotate", "two", "--pubkey", str(
        ssh_keygen(tmp_path / "other" / "id_ed25519").with_suffix(".pub")))


# -- the gate keeps an actor's history ---------------------------------------------------------
def test_the_gate_refuses_rewriting_an_actors_history(kit: Kit, tmp_path: Path) -> None:
    kit.add_actor("hist", ["client"], external=True)
    new = ssh_keygen(tmp_path / "n" / "id_ed25519").with_suffix(".pub").read_text()
    registrar.rotate_actor(kit.hub, "hist", " ".join(new.split()[:2]), False)
    assert registrar.revoke_actor(kit.hub, "hist").revoked
    current = registry.actors(kit.hub)["hist"]
    other = registry.actors(kit.hub)["vera"]
    doc = current.model_dump(mode="json")
    attempts = {
        "a revoked actor stays revoked": {**doc, "revoked": False, "revoked_at": None},
        "retired keys are never changed or dropped": {**doc, "retired_keys": []},
        "key already belongs to vera": {**doc, "retired_keys": [
            *doc["retired_keys"], {"key": other.key, "valid_before": "2030-01-01T00:00:00Z"}]},
    }
    tip = Repo(kit.hub.registry_path).ref("refs/heads/main")
    for what, data in attempts.items():
        with pytest.raises(GateRejection, match=re.escape(what)):
            registrar.commit_files(kit.hub, {"actors/hist.yaml": dump_yaml(data).encode()},
                                  "Rewrite history\n", kit.hub.config.platform)
        assert Repo(kit.hub.registry_path).ref("refs/heads/main") == tip

    # a key change without retiring the old key, and a retired key without a rotation
    kit.add_actor("hist2", ["client"], external=True)
    doc2 = registry.actors(kit.hub)["hist2"].model_dump(mode="json")
    newer = ssh_keygen(tmp_path / "m" / "id_ed25519").with_suffix(".pub").read_text()
    spare = ssh_keygen(tmp_path / "s" / "id_ed25519").with_suffix(".pub").read_text()
    for what, data in {
        "a rotation must move the old key to retired_keys": {**doc2, "key": newer},
        "retired keys are added only by a rotation": {**doc2, "retired_keys": [
            {"key": spare, "valid_before": "2026-01-01T00:00:00Z"}]},
    }.items():
        with pytest.raises(GateRejection, match=re.escape(what)):
            registrar.commit_files(kit.hub, {"actors/hist2.yaml": dump_yaml(data).encode()},
                                  "Rewrite history\n", kit.hub.config.platform)


# -- units -------------------------------------------------------------------------------------
def test_key_holder_counts_retired_keys(tmp_path: Path) -> None:
    old = ssh_keygen(tmp_path / "o").with_suffix(".pub").read_text()
    new = ssh_keygen(tmp_path / "n").with_suffix(".pub").read_text()
    actor = Actor(id="rot", roles=["client"], owner="rot", key=new, retired_keys=[
        RetiredKey(key=old, valid_before="2026-01-01T00:00:00Z")])
    assert registry.key_holder({"rot": actor}, old) == actor
    assert registry.key_holder({"rot": actor}, new) == actor
    assert registry.key_holder({"rot": actor}, old, besides="rot") is None


def test_the_actor_document_keeps_a_consistent_history(tmp_path: Path) -> None:
    key = ssh_keygen(tmp_path / "k").with_suffix(".pub").read_text()
    base = {"id": "someone", "roles": ["client"], "owner": "someone", "key": key}
    for bad in ({"revoked_at": "2026-01-01T00:00:00Z"},
                {"revoked": True, "revoked_at": "2026-01-01 00:00:00"},
                {"retired_keys": [{"key": key, "valid_before": "2026-01-01T00:00:00Z"}]}):
        with pytest.raises(ValueError):
            Actor.model_validate({**base, **bad})
    assert Actor.model_validate({**base, "revoked": True}).revoked_at is None  # older documents


def test_allowed_signers_writes_validity_windows() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKn+0000000000000000000000000000000000000000"
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert allowed_signers([("b@x", key), ("a@x", key, when)]) == (
        f'a@x namespaces="git",valid-before="20260304030607Z" {key}\n'
        f'b@x namespaces="git" {key}\n')
