"""Differential test: ``aismm.core.signing.verify`` and ``ssh-keygen -Y verify`` judge mutated real
signatures alike.

Real signatures come from ``ssh-keygen -Y sign`` (sha512 and sha256) and from our own signer,
all by one OpenSSH-made Ed25519 key. Hypothesis mutates them at the blob level (truncation,
trailing bytes after the blob and inside its inner strings, changed length fields, namespace,
hash algorithm, key types, version, reserved field, flipped bits; re-armored the way ssh-keygen
armors) and at the text level (truncation, trailing text, flipped characters, other line
layouts). For every case both verifiers run: ``ssh-keygen -Y verify -f allowed_signers -I
<principal> -n git`` and ours (accepting only when the signer is that principal's key).

They must agree, with one documented exception: a few encodings OpenSSH tolerates are
re-encodings of a signature that ``ssh-keygen -Y sign`` never writes (another armor layout,
SSHSIG version 0, a non-empty reserved field). Accepting them would let anyone holding a signed
object copy it under a new id, so ours refuses them with "non-canonical" in the message; that is
the only way ours may refuse what OpenSSH accepts. Ours must never accept what OpenSSH refuses,
and must never fail with anything but :class:`SignatureError`.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context

from aismm.core import signing
from aismm.core.clock import FixedClock
from aismm.core.errors import GateRejection, SignatureError
from aismm.infra.git import Identity, Repo
from aismm.services import judged
from aismm.services.hubs import init_hub
from tests.conftest import git

MESSAGE = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@x> 1 +0000\n\nwork\n"
PRINCIPAL = "signer@aismm.invalid"
SETTINGS = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# -- an independent SSHSIG codec (the test does not trust aismm.core.signing's parser) ---------------
@dataclass(frozen=True)
class Sig:
    """An SSHSIG blob as its fields; ``*_extra`` bytes sit inside a string after its fields,
    ``tail`` after the blob, and ``lengths`` adds a delta to the named length field."""

    magic: bytes
    version: int
    pub_type: bytes
    pub_key: bytes
    ns: bytes
    reserved: bytes
    hash: bytes
    sig_type: bytes
    sig_raw: bytes
    pub_extra: bytes = b""
    sig_extra: bytes = b""
    tail: bytes = b""
    lengths: tuple[tuple[str, int], ...] = ()

    def encode(self) -> bytes:
        delta = dict(self.lengths)

        def string(name: str, data: bytes) -> bytes:
            length = min(max(len(data) + delta.get(name, 0), 0), 2**32 - 1)
            return struct.pack(">I", length) + data

        pub = string("pub_type", self.pub_type) + string("pub_key", self.pub_key) + self.pub_extra
        sig = string("sig_type", self.sig_type) + string("sig_raw", self.sig_raw) + self.sig_extra
        return (self.magic + struct.pack(">I", self.version) + string("pub", pub)
                + string("ns", self.ns) + string("reserved", self.reserved)
                + string("hash", self.hash) + string("sig", sig) + self.tail)


def decode(blob: bytes) -> Sig:
    def strings(data: bytes, n: int) -> list[bytes]:
        out, pos = [], 0
        for _ in range(n):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            out.append(data[pos + 4 : pos + 4 + length])
            pos += 4 + length
        assert pos == len(data)
        return out

    (version,) = struct.unpack(">I", blob[6:10])
    pub, ns, reserved, hash_alg, sig = strings(blob[10:], 5)
    pub_type, pub_key = strings(pub, 2)
    sig_type, sig_raw = strings(sig, 2)
    return Sig(blob[:6], version, pub_type, pub_key, ns, reserved, hash_alg, sig_type, sig_raw)


def armor(blob: bytes, width: int = 70) -> str:
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + width] for i in range(0, len(text), width)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"]
                     ) + "\n"


def dearmor(text: str) -> bytes:
    return base64.b64decode("".join(text.splitlines()[1:-1]))


def event(label: str) -> None:
    """Record a hypothesis statistics event when inside a hypothesis test."""
    from hypothesis import event as record

    try:
        current_build_context()
    except Exception:  # noqa: BLE001 - outside hypothesis: nothing to record
        return
    record(label)


# -- the two verifiers -------------------------------------------------------------------------
@dataclass
class World:
    folder: Path
    allowed: Path
    public: str
    real: dict[str, str]
    counter: int = 0

    def openssh(self, armored: str | bytes) -> bool:
        self.counter += 1
        sig = self.folder / f"case-{self.counter % 4}.sig"
        sig.write_bytes(armored.encode() if isinstance(armored, str) else armored)
        proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(self.allowed), "-I",
                               PRINCIPAL, "-n", "git", "-s", str(sig)], input=MESSAGE,
                              capture_output=True, check=False)
        return proc.returncode == 0

    def ours(self, armored: str | bytes) -> tuple[bool, str]:
        try:
            return signing.verify(armored, MESSAGE) == self.public, "wrong signer"
        except SignatureError as exc:
            return False, str(exc)

    def judge(self, armored: str | bytes) -> tuple[bool, bool]:
        """Both verdicts, asserting they agree (or ours refuses a non-canonical form)."""
        theirs = self.openssh(armored)
        mine, why = self.ours(armored)
        if theirs and not mine:
            assert "non-canonical" in why, f"ssh-keygen accepts, aismm refuses: {why}"
            event("refused as non-canonical, accepted by ssh-keygen")
        else:
            assert mine == theirs, f"aismm {'accepts' if mine else 'refuses'} ({why}), " \
                                   f"ssh-keygen {'accepts' if theirs else 'refuses'}"
            event("both accept" if mine else "both refuse")
        return theirs, mine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("sshsig")
    key = folder / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   capture_output=True)
    public = signing.parse_public_key(key.with_suffix(".pub").read_text())
    allowed = folder / "allowed_signers"
    allowed.write_text(signing.allowed_signers([(PRINCIPAL, public)]))
    message = folder / "message"
    message.write_bytes(MESSAGE)
    real = {}
    for alg in ("sha512", "sha256"):
        subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(key), "-O",
                        f"hashalg={alg}", str(message)], check=True, capture_output=True)
        real[f"ssh-keygen {alg}"] = message.with_name("message.sig").read_text()
        message.with_name("message.sig").unlink()
    real["aismm"] = signing.sign(signing.read_private_key_file(key), MESSAGE)
    yield World(folder, allowed, public, real)


def test_real_signatures_verify_with_both(world: World) -> None:
    for name, text in world.real.items():
        assert world.judge(text) == (True, True), name
        assert armor(dearmor(text)) == text, f"{name} is not in canonical armor"


# -- targeted cases: each class of mutation once, by name ---------------------------------------
def _fields(world: World, **changes: object) -> str:
    return armor(replace(decode(dearmor(world.real["ssh-keygen sha512"])), **changes).encode())


def _blob(world: World, edit: Callable[[bytes], bytes]) -> str:
    return armor(edit(dearmor(world.real["ssh-keygen sha512"])))


TARGETED: dict[str, Callable[[World], str]] = {
    "trailing byte after the blob": lambda w: _fields(w, tail=b"\0"),
    "trailing bytes after the blob": lambda w: _fields(w, tail=b"junk"),
    "trailing data inside the public key": lambda w: _fields(w, pub_extra=b"\0"),
    "trailing data inside the signature blob": lambda w: _fields(w, sig_extra=b"\0\0\0\0"),
    "65-byte raw signature": lambda w: _blob(w, lambda b: replace(
        decode(b), sig_raw=decode(b).sig_raw + b"\0").encode()),
    "63-byte raw signature": lambda w: _blob(w, lambda b: replace(
        decode(b), sig_raw=decode(b).sig_raw[:-1]).encode()),
    "33-byte public key": lambda w: _blob(w, lambda b: replace(
        decode(b), pub_key=decode(b).pub_key + b"\0").encode()),
    "truncated blob": lambda w: _blob(w, lambda b: b[:-1]),
    "truncated to the magic": lambda w: _blob(w, lambda b: b[:6]),
    "outer length one too long": lambda w: _fields(w, lengths=(("sig", 1),)),
    "outer length one too short": lambda w: _fields(w, lengths=(("sig", -1),), tail=b""),
    "inner length one too short": lambda w: _fields(w, lengths=(("sig_raw", -1),)),
    "namespace file": lambda w: _fields(w, ns=b"file"),
    "namespace git NUL": lambda w: _fields(w, ns=b"git\0"),
    "hash sha384": lambda w: _fields(w, hash=b"sha384"),
    "hash sha512 NUL": lambda w: _fields(w, hash=b"sha512\0"),
    "hash swapped to sha256": lambda w: _fields(w, hash=b"sha256"),
    "key type ssh-rsa": lambda w: _fields(w, pub_type=b"ssh-rsa"),
    "key type ssh-ed25519 NUL": lambda w: _fields(w, pub_type=b"ssh-ed25519\0"),
    "signature type ssh-ed25519 NUL": lambda w: _fields(w, sig_type=b"ssh-ed25519\0"),
    "namespace g NUL t": lambda w: _fields(w, ns=b"g\0t"),
    "signature type ssh-rsa": lambda w: _fields(w, sig_type=b"ssh-rsa"),
    "signature type sk-ssh-ed25519": lambda w: _fields(w, sig_type=b"sk-ssh-ed25519@openssh.com"),
    "version 2": lambda w: _fields(w, version=2),
    "version 0": lambda w: _fields(w, version=0),
    "reserved not empty": lambda w: _fields(w, reserved=b"x"),
    "magic changed": lambda w: _fields(w, magic=b"SSHSIH"),
    "text after the footer": lambda w: w.real["ssh-keygen sha512"] + "trailing\n",
    "lines wrapped at 64": lambda w: armor(dearmor(w.real["ssh-keygen sha512"]), 64),
    "CRLF line ends": lambda w: w.real["ssh-keygen sha512"].replace("\n", "\r\n"),
    "missing final newline": lambda w: w.real["ssh-keygen sha512"].rstrip("\n"),
    "armor of another blob length": lambda w: w.real["ssh-keygen sha512"].replace(
        "-----END", "AAAA\n-----END"),
}
# Cases ssh-keygen accepts and we refuse as re-encodings (see the module docstring).
NON_CANONICAL = {"version 0", "reserved not empty", "text after the footer", "lines wrapped at 64",
                 "missing final newline", "namespace git NUL", "hash sha512 NUL",
                 "key type ssh-ed25519 NUL", "signature type ssh-ed25519 NUL"}


@pytest.mark.parametrize("case", sorted(TARGETED))
def test_targeted_mutation(world: World, case: str) -> None:
    theirs, mine = world.judge(TARGETED[case](world))
    assert not mine, f"aismm accepts a mutated signature ({case})"
    assert theirs == (case in NON_CANONICAL), f"ssh-keygen {'accepts' if theirs else 'refuses'}"


# -- hypothesis: blob-level mutations, re-armored canonically ------------------------------------
LENGTHS = ("pub", "pub_type", "pub_key", "ns", "reserved", "hash", "sig", "sig_type", "sig_raw")
KEY_TYPES = [b"ssh-ed25519", b"ssh-rsa", b"ssh-ed448", b"sk-ssh-ed25519@openssh.com",
             b"ssh-ed25519\0", b"ssh-ed2551", b"SSH-ED25519", b""]
field_mutation = st.one_of(
    st.builds(lambda b: ("tail", {"tail": b}), st.binary(min_size=1, max_size=8)),
    st.builds(lambda where, b: ("inner trailing", {f"{where}_extra": b}),
              st.sampled_from(["pub", "sig"]), st.binary(min_size=1, max_size=8)),
    st.builds(lambda name, d: ("length", {"lengths": ((name, d),)}), st.sampled_from(LENGTHS),
              st.integers(-8, 8).filter(bool) | st.sampled_from([2**31, 2**32 - 1, -2**31])),
    st.builds(lambda ns: ("namespace", {"ns": ns}),
              st.sampled_from([b"", b"gi", b"gitx", b"GIT", b"file", b"git\0", b"\0git"])
              | st.binary(max_size=5)),
    st.builds(lambda h: ("hash", {"hash": h}), st.sampled_from(
        [b"sha256", b"sha512", b"sha384", b"sha1", b"SHA512", b"sha512\0", b"", b"md5"])),
    st.builds(lambda where, t: ("key type", {where: t}), st.sampled_from(["pub_type", "sig_type"]),
              st.sampled_from(KEY_TYPES)),
    st.builds(lambda v: ("version", {"version": v}), st.sampled_from([0, 1, 2, 256, 2**32 - 1])),
    st.builds(lambda r: ("reserved", {"reserved": r}), st.binary(max_size=8)),
    st.builds(lambda raw: ("raw signature", {"sig_raw": raw}), st.binary(min_size=0, max_size=66)),
)
byte_mutation = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.integers(0, 250)),
    st.tuples(st.just("flip"), st.integers(0, 250), st.integers(0, 7)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
)


def _mutate_blob(blob: bytes, fields: list[tuple[str, dict[str, object]]],
                 byte: tuple[object, ...] | None) -> bytes:
    sig = decode(blob)
    for _, change in fields:
        sig = replace(sig, **change)  # type: ignore[arg-type]
    out = sig.encode()
    if byte is None:
        return out
    if byte[0] == "truncate":
        return out[: int(byte[1]) % len(out)]  # type: ignore[call-overload]
    if byte[0] == "flip":
        at = int(byte[1]) % len(out)  # type: ignore[call-overload]
        return out[:at] + bytes([out[at] ^ (1 << int(byte[2]))]) + out[at + 1 :]  # type: ignore[call-overload]
    return out + byte[1]  # type: ignore[operator]


@settings(SETTINGS, max_examples=300)
@given(base=st.sampled_from(["ssh-keygen sha512", "ssh-keygen sha256", "aismm"]),
       fields=st.lists(field_mutation, max_size=2), byte=byte_mutation)
def test_blob_mutations_agree_with_ssh_keygen(world: World, base: str,
                                              fields: list[tuple[str, dict[str, object]]],
                                              byte: tuple[object, ...] | None) -> None:
    for name, _ in fields:
        event(f"mutation: {name}")
    event(f"byte mutation: {byte[0] if byte else 'none'}")
    world.judge(armor(_mutate_blob(dearmor(world.real[base]), fields, byte)))


# -- hypothesis: text-level mutations of the armor -----------------------------------------------
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
text_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 400)),
    st.tuples(st.just("append"), st.text(B64 + " \n\r\t-\0é", min_size=1, max_size=12)),
    st.tuples(st.just("replace"), st.integers(0, 400), st.sampled_from(list(B64 + " \n\r\t-"))),
    st.tuples(st.just("insert"), st.integers(0, 400), st.sampled_from(list(B64 + " \n\r\t-"))),
    st.tuples(st.just("delete"), st.integers(0, 400)),
    st.tuples(st.just("rewrap"), st.integers(1, 120)),
)


def _mutate_text(text: str, how: tuple[object, ...]) -> str:
    kind, arg = how[0], how[1]
    if kind == "rewrap":
        return armor(dearmor(text), int(arg))  # type: ignore[call-overload]
    if kind == "append":
        return text + str(arg)
    at = int(arg) % (len(text) + 1)  # type: ignore[call-overload]
    if kind == "truncate":
        return text[:at]
    if kind == "replace":
        return text[:at] + str(how[2]) + text[at + 1 :]
    if kind == "insert":
        return text[:at] + str(how[2]) + text[at:]
    return text[:at] + text[at + 1 :]


@settings(SETTINGS, max_examples=200)
@given(base=st.sampled_from(["ssh-keygen sha512", "ssh-keygen sha256", "aismm"]),
       how=text_mutation)
def test_armor_mutations_agree_with_ssh_keygen(world: World, base: str,
                                               how: tuple[object, ...]) -> None:
    event(f"text mutation: {how[0]}")
    world.judge(_mutate_text(world.real[base], how).encode("utf-8"))


# -- the attack of issue 11 item 9: a signed commit copied under a new id ------------------------
def test_commit_copy_with_trailing_signature_data_is_refused_by_git_and_the_gate(
        tmp_path: Path) -> None:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    repo = Repo(hub.registry_path)
    old = repo.ref("refs/heads/main")
    assert old is not None
    tree = repo.build_tree(repo.tree_of(old), {"assessments/note.yaml": b"a: 1\n"})
    commit = repo.write_commit(tree=tree, parents=[old], message="Note\n",
                               key=hub.hosted_key(hub.config.platform),
                               who=Identity("platform", "platform@aismm.invalid"),
                               when=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    judged.judge(hub, repo, [(old, commit, "refs/heads/main")])  # the original passes

    raw = git("-C", str(repo.path), "cat-file", "commit", commit).stdout
    head, _, rest = raw.partition("gpgsig ")
    sig_lines, _, body = rest.partition("-----END SSH SIGNATURE-----\n")
    armored = "\n".join(line.strip() for line in sig_lines.splitlines()) \
        + "-----END SSH SIGNATURE-----\n"
    copied = armor(dearmor(armored) + b"\0")
    header = "gpgsig " + "\n ".join(copied.rstrip("\n").splitlines()) + "\n"
    forged = subprocess.run(["git", "-C", str(repo.path), "hash-object", "-t", "commit", "-w",
                             "--stdin"], input=head + header + body, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert forged != commit
    assert repo.commit(forged).payload == repo.commit(commit).payload

    res = git("-C", str(repo.path), "-c", "gpg.format=ssh", "-c",
              f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}", "verify-commit", forged,
              check=False)
    assert res.returncode != 0 and "trailing data" in res.stderr
    with pytest.raises(GateRejection, match="bad signature"):
        judged.judge(hub, repo, [(old, forged, "refs/heads/main")])


def test_commits_we_write_carry_the_signature_exactly_as_git_does(tmp_path: Path) -> None:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    repo = Repo(hub.registry_path)
    tip = repo.ref("refs/heads/main")
    assert tip is not None
    raw = git("-C", str(repo.path), "cat-file", "commit", tip).stdout
    assert "-----END SSH SIGNATURE-----\n\n" in raw and "\n \n" not in raw  # no blank line
    info = repo.commit(tip)
    assert info.signature is not None and info.signature.endswith(b"-----\n")
    assert signing.verify(info.signature, info.payload or b"") == \
        hub.hosted_key(hub.config.platform).public_line
