"""SSH signatures: ours verify in-process and with the real git binary; tampering is caught."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from aismm.core import signing
from aismm.core.errors import SignatureError, UsageError
from aismm.infra.git import Identity, Repo
from tests.conftest import git

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
WHO = Identity("Alice", "alice@example.invalid")


def test_sign_verify_roundtrip_returns_signer() -> None:
    key = signing.generate_key()
    sig = signing.sign(key, b"hello")
    assert signing.verify(sig, b"hello") == key.public_line


def test_tampered_message_and_wrong_namespace_are_rejected() -> None:
    key = signing.generate_key()
    sig = signing.sign(key, b"hello")
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(sig, b"hellO")
    with pytest.raises(SignatureError, match="namespace"):
        signing.verify(signing.sign(key, b"x", namespace="file"), b"x")


def test_garbage_signature_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="not an SSH signature"):
        signing.verify("nope", b"x")


def test_ssh_keygen_signature_verifies_in_process(tmp_path: Path) -> None:
    import subprocess

    keyfile = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    msg = tmp_path / "m"
    msg.write_bytes(b"payload\n")
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(keyfile), str(msg)],
                   check=True, capture_output=True)
    armored = (tmp_path / "m.sig").read_text()
    pub = signing.parse_public_key(keyfile.with_suffix(".pub").read_text())
    assert signing.verify(armored, b"payload\n") == pub


def test_public_key_parsing_errors() -> None:
    with pytest.raises(UsageError, match="not an ssh-ed25519 public key"):
        signing.parse_public_key("ssh-rsa AAAA")
    with pytest.raises(UsageError, match="malformed"):
        signing.parse_public_key("ssh-ed25519 !!!notbase64")


def _signed_repo(tmp_path: Path) -> tuple[Repo, signing.PrivateKey, str, Path]:
    key = signing.generate_key()
    repo = Repo.init_bare(tmp_path / "r.git")
    tree = repo.build_tree(None, {"a/b.txt": b"one\n", "c.txt": b"two\n"})
    commit = repo.write_commit(tree=tree, parents=[], message="first\n", key=key, who=WHO, when=WHEN)
    repo.update_ref("refs/heads/main", commit, None)
    signers = tmp_path / "allowed"
    signers.write_text(signing.allowed_signers([("alice", key.public_line)]))
    return repo, key, commit, signers


def test_git_verify_commit_accepts_our_signature(tmp_path: Path) -> None:
    repo, _, commit, signers = _signed_repo(tmp_path)
    res = git("-C", str(repo.path), "-c", "gpg.format=ssh", "-c",
              f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", "-v", commit, check=False)
    assert res.returncode == 0, res.stderr
    assert 'Good "git" signature for alice' in res.stderr
    info = repo.commit(commit)
    assert info.signature is not None and info.payload is not None
    assert signing.verify(info.signature, info.payload) == _signer(signers)


def _signer(signers: Path) -> str:
    return " ".join(signers.read_text().split()[2:4])


def test_git_verify_tag_accepts_our_signed_tag(tmp_path: Path) -> None:
    repo, key, commit, signers = _signed_repo(tmp_path)
    tag = repo.write_tag(target=commit, name="settled", message="body: 1\n", key=key, who=WHO,
                         when=WHEN)
    repo.update_ref("refs/tags/settled", tag, None)
    res = git("-C", str(repo.path), "-c", "gpg.format=ssh", "-c",
              f"gpg.ssh.allowedSignersFile={signers}", "verify-tag", "settled", check=False)
    assert res.returncode == 0, res.stderr
    info = repo.tag(tag)
    assert info.target == commit and info.name == "settled"
    assert info.signature and signing.verify(info.signature, info.payload or b"") == key.public_line


def test_tampered_commit_is_rejected_by_git_and_by_us(tmp_path: Path) -> None:
    repo, _, commit, signers = _signed_repo(tmp_path)
    raw = git("-C", str(repo.path), "cat-file", "commit", commit).stdout
    forged = raw.replace("first", "forged")
    res = git("-C", str(repo.path), "hash-object", "-t", "commit", "-w", "--stdin",
              "--literally", check=False, env=None) if False else None
    import subprocess

    oid = subprocess.run(["git", "-C", str(repo.path), "hash-object", "-t", "commit", "-w",
                          "--stdin"], input=forged, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert oid != commit
    res = git("-C", str(repo.path), "-c", "gpg.format=ssh", "-c",
              f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", oid, check=False)
    assert res.returncode != 0
    info = repo.commit(oid)
    with pytest.raises(SignatureError):
        signing.verify(info.signature or b"", info.payload or b"")


def test_fsck_strict_is_clean(tmp_path: Path) -> None:
    repo, key, commit, _ = _signed_repo(tmp_path)
    tag = repo.write_tag(target=commit, name="settled", message="x", key=key, who=WHO, when=WHEN)
    repo.update_ref("refs/tags/settled", tag, None)
    res = git("-C", str(repo.path), "fsck", "--strict", "--no-dangling", check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_key_file_is_private(tmp_path: Path) -> None:
    key = signing.generate_key()
    key.write(tmp_path / "keys" / "a.key")
    assert (tmp_path / "keys" / "a.key").stat().st_mode & 0o777 == 0o600
    again = signing.read_private_key_file(tmp_path / "keys" / "a.key")
    assert again.public_line == key.public_line
