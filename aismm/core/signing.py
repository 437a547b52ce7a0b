"""Ed25519 keys in OpenSSH format and SSH signatures (SSHSIG) as git writes and checks them.

The only module that touches ``cryptography``. Verification is in-process; the same signatures
pass ``git verify-commit`` with the allowed-signers file from :func:`allowed_signers`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aismm.core.errors import SignatureError, UsageError


def _serialization() -> ModuleType:
    """cryptography's key (de)serialisation, loaded only where a key file or line is read or
    written: a hook that only verifies signatures never needs it (~16 ms of imports)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - lean hook path

    return serialization

__all__ = [
    "BEGIN",
    "END",
    "PrivateKey",
    "allowed_signers",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "parse_public_key",
    "read_private_key_file",
    "sign",
    "split_armored",
    "verify",
]

BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_KEYTYPE = b"ssh-ed25519"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


_HASHES = {b"sha512": hashlib.sha512, b"sha256": hashlib.sha256}
_WRAP = 70  # base64 characters per armor line, as ssh-keygen writes them


class _Reader:
    """Reads SSH wire fields from one buffer and insists that every byte is consumed."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SignatureError(f"signature: truncated {self.what}; re-sign the object")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        (value,) = struct.unpack(">I", self.take(4))
        return int(value)

    def string(self) -> bytes:
        return self.take(self.u32())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError(f"signature: {self.what} contains trailing data; "
                                 "re-sign the object")


def _cstring(value: bytes, what: str) -> bytes:
    """A name field; OpenSSH reads it as a C string, so one trailing NUL is a re-encoding."""
    if value.endswith(b"\0") and b"\0" not in value[:-1]:
        raise SignatureError(f"signature: non-canonical {what} (a trailing NUL byte); "
                             "re-sign the object")
    return value


def _armor(blob: bytes) -> str:
    """The one canonical armored form of a blob: 70-column base64 between the two lines."""
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + _WRAP] for i in range(0, len(text), _WRAP)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def _dearmor(armored: str | bytes) -> bytes:
    """The SSHSIG blob of an armored signature in exactly the form ``ssh-keygen -Y sign`` writes.

    Any other layout (other line lengths, extra whitespace, text after the footer, non-zero
    base64 padding bits) is refused: OpenSSH tolerates some of them, but each one would let
    anyone re-encode a signed object under a new id with the same signature.
    """
    text = armored.decode("ascii", "replace") if isinstance(armored, bytes) else armored
    head, foot = BEGIN + "\n", "\n" + END
    end = text.find(foot)
    if not text.startswith(head) or end < 0:
        raise SignatureError("signature: not an SSH signature; sign with gpg.format=ssh")
    try:
        blob = base64.b64decode("".join(text[len(head) : end].split()), validate=True)
    except ValueError as exc:
        raise SignatureError("signature: corrupt base64; re-sign the object") from exc
    if text != _armor(blob):
        raise SignatureError("signature: non-canonical armor (not the exact lines ssh-keygen "
                             "writes); re-sign the object")
    return blob


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 private key with its OpenSSH public line."""

    key: Ed25519PrivateKey

    @property
    def public_line(self) -> str:
        serialization = _serialization()
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return raw.decode()

    def pem(self) -> bytes:
        serialization = _serialization()
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )

    def write(self, path: Path) -> None:
        """Write the key in OpenSSH format with mode 0600 (never world-readable)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.pem())
        path.with_suffix(".pub").write_text(self.public_line + "\n")


def generate_key() -> PrivateKey:
    """A fresh Ed25519 key."""
    return PrivateKey(Ed25519PrivateKey.generate())


def load_private_key(data: bytes, where: str = "key") -> PrivateKey:
    """Load an unencrypted OpenSSH Ed25519 private key."""
    serialization = _serialization()
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{where}: not an unencrypted OpenSSH private key; create one with "
            "`ssh-keygen -t ed25519 -N ''`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where}: not an Ed25519 key; create one with `ssh-keygen -t ed25519`")
    return PrivateKey(key)


def read_private_key_file(path: Path) -> PrivateKey:
    """Load a private key file, naming the file in any error."""
    try:
        return load_private_key(path.read_bytes(), str(path))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read key ({exc.strerror}); check the path") from exc


def parse_public_key(line: str, where: str = "public key") -> str:
    """Validate an ``ssh-ed25519 AAAA… [comment]`` line; return it as ``ssh-ed25519 AAAA…``."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise UsageError(f"{where}: not an ssh-ed25519 public key line; use the .pub file")
    serialization = _serialization()
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: malformed ssh-ed25519 key; use the .pub file") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where}: not an Ed25519 key; use an ssh-ed25519 key")
    return f"{parts[0]} {parts[1]}"


def _public_blob(public_line: str) -> bytes:
    return base64.b64decode(public_line.split()[1])


def _signed_data(namespace: bytes, message: bytes) -> bytes:
    digest = hashlib.sha512(message).digest()
    return _MAGIC + _string(namespace) + _string(b"") + _string(b"sha512") + _string(digest)


def sign(key: PrivateKey, message: bytes, namespace: str = "git") -> str:
    """An armored SSHSIG signature over ``message``, as ``ssh-keygen -Y sign`` makes."""
    raw = key.key.sign(_signed_data(namespace.encode(), message))
    blob = (
        _MAGIC
        + struct.pack(">I", 1)
        + _string(_public_blob(key.public_line))
        + _string(namespace.encode())
        + _string(b"")
        + _string(b"sha512")
        + _string(_string(_KEYTYPE) + _string(raw))
    )
    return _armor(blob)


def verify(armored: str | bytes, message: bytes, namespace: str = "git") -> str:
    """Check an SSHSIG signature; return the signer's ``ssh-ed25519 AAAA…`` line.

    Strict: the armor must be exactly what ``ssh-keygen -Y sign`` writes and every field of
    the blob (magic, version 1, public key, namespace, empty reserved field, sha256 or sha512,
    signature) and of the strings inside it must be consumed exactly, with no trailing data.
    Whatever OpenSSH refuses is refused here; the few encodings OpenSSH tolerates but that
    only a re-encoder would make (other armor layouts, version 0, a non-empty reserved field)
    are refused too, with "non-canonical" in the message, so a signed object cannot be copied
    under a new id.
    """
    blob = _dearmor(armored)
    outer = _Reader(blob, "blob")
    if outer.take(len(_MAGIC)) != _MAGIC:
        raise SignatureError("signature: not an SSHSIG blob; sign with ssh-keygen -Y sign")
    version = outer.u32()
    if version > 1:
        raise SignatureError(f"signature: SSHSIG version {version} is not supported; "
                             "sign with ssh-keygen -Y sign")
    pub, ns, reserved, hash_alg, sig = (outer.string() for _ in range(5))
    outer.end()
    if version != 1:
        raise SignatureError(f"signature: non-canonical version {version}; re-sign the object")
    ns, hash_alg = _cstring(ns, "namespace"), _cstring(hash_alg, "hash algorithm")
    if ns != namespace.encode():
        raise SignatureError(f"signature: namespace {ns!r} is not {namespace!r}; sign with -n git")
    hasher = _HASHES.get(hash_alg)
    if hasher is None:
        raise SignatureError(f"signature: unsupported hash {hash_alg!r}; use sha512 or sha256")
    key = _Reader(pub, "public key")
    keytype, keybytes = key.string(), key.string()
    key.end()
    inner = _Reader(sig, "signature blob")
    sigtype, sigbytes = inner.string(), inner.string()
    inner.end()
    keytype, sigtype = _cstring(keytype, "key type"), _cstring(sigtype, "signature type")
    if keytype != _KEYTYPE or sigtype != _KEYTYPE:
        raise SignatureError("signature: only ssh-ed25519 keys are accepted; use an Ed25519 key")
    if len(keybytes) != 32 or len(sigbytes) != 64:
        raise SignatureError("signature: malformed ssh-ed25519 key or signature; re-sign it")
    if reserved:
        raise SignatureError("signature: non-canonical reserved field (not empty); "
                             "re-sign the object")
    signed = (
        _MAGIC + _string(ns) + _string(b"") + _string(hash_alg)
        + _string(hasher(message).digest())
    )
    try:
        Ed25519PublicKey.from_public_bytes(keybytes).verify(sigbytes, signed)
    except InvalidSignature as exc:
        raise SignatureError("signature: does not match the signed content; re-sign it") from exc
    return "ssh-ed25519 " + base64.b64encode(pub).decode()


def fingerprint(public_line: str) -> str:
    """``SHA256:…`` fingerprint, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(_public_blob(public_line)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def allowed_signers(entries: Iterable[tuple[str, str] | tuple[str, str, dt.datetime | None]]
                    ) -> str:
    """An allowed-signers file (``principal namespaces="git" key``) for git's allowedSignersFile.

    An entry ``(principal, key, valid_before)`` with an instant gets OpenSSH's
    ``valid-before="YYYYMMDDhhmmssZ"`` option (UTC): ``git verify-commit`` passes the commit's
    date as the verify time, so a rotated-out or revoked key still verifies what it signed
    before the instant and nothing dated after it.
    """
    lines = []
    for who, key, *rest in entries:
        until = rest[0] if rest else None
        options = 'namespaces="git"'
        if until is not None:
            stamp = until.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")
            options += f',valid-before="{stamp}"'
        lines.append((who, key, f"{who} {options} {key}\n"))
    return "".join(line for _, _, line in sorted(lines))


def split_armored(raw: bytes) -> tuple[bytes, bytes] | None:
    """Split a signed tag object into (payload, signature), or None if it carries none."""
    at = raw.find(BEGIN.encode())
    if at < 0:
        return None
    return raw[:at], raw[at:]
