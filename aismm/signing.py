"""Ed25519 keys in OpenSSH format and SSH signatures (SSHSIG) as git writes and checks them.

The only module that touches ``cryptography``. Verification is in-process; the same signatures
pass ``git verify-commit`` with the allowed-signers file from :func:`allowed_signers`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aismm.errors import SignatureError, UsageError

__all__ = [
    "PrivateKey", "generate_key", "load_private_key", "read_private_key_file",
    "parse_public_key", "sign", "verify", "fingerprint", "allowed_signers", "split_armored",
    "BEGIN", "END",
]

BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_KEYTYPE = b"ssh-ed25519"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(blob):
        raise SignatureError("signature: truncated blob; re-sign the object")
    (length,) = struct.unpack(">I", blob[pos : pos + 4])
    end = pos + 4 + length
    if end > len(blob):
        raise SignatureError("signature: truncated blob; re-sign the object")
    return blob[pos + 4 : end], end


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 private key with its OpenSSH public line."""

    key: Ed25519PrivateKey

    @property
    def public_line(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return raw.decode()

    def pem(self) -> bytes:
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
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def verify(armored: str | bytes, message: bytes, namespace: str = "git") -> str:
    """Check an SSHSIG signature; return the signer's ``ssh-ed25519 AAAA…`` line."""
    text = armored.decode("ascii", "replace") if isinstance(armored, bytes) else armored
    body = text.strip()
    if not (body.startswith(BEGIN) and body.endswith(END)):
        raise SignatureError("signature: not an SSH signature; sign with gpg.format=ssh")
    try:
        blob = base64.b64decode("".join(body[len(BEGIN) : -len(END)].split()), validate=True)
    except ValueError as exc:
        raise SignatureError("signature: corrupt base64; re-sign the object") from exc
    if not blob.startswith(_MAGIC) or blob[6:10] != struct.pack(">I", 1):
        raise SignatureError("signature: not an SSHSIG v1 blob; sign with ssh-keygen -Y sign")
    pub, pos = _read_string(blob, 10)
    ns, pos = _read_string(blob, pos)
    _reserved, pos = _read_string(blob, pos)
    hash_alg, pos = _read_string(blob, pos)
    sig, pos = _read_string(blob, pos)
    if ns != namespace.encode():
        raise SignatureError(f"signature: namespace {ns!r} is not {namespace!r}; sign with -n git")
    if hash_alg not in (b"sha512", b"sha256"):
        raise SignatureError(f"signature: unsupported hash {hash_alg!r}; use sha512")
    keytype, kpos = _read_string(pub, 0)
    keybytes, _ = _read_string(pub, kpos)
    sigtype, spos = _read_string(sig, 0)
    sigbytes, _ = _read_string(sig, spos)
    if keytype != _KEYTYPE or sigtype != _KEYTYPE or len(keybytes) != 32:
        raise SignatureError("signature: only ssh-ed25519 keys are accepted; use an Ed25519 key")
    hasher = hashlib.sha512 if hash_alg == b"sha512" else hashlib.sha256
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


def allowed_signers(entries: list[tuple[str, str]]) -> str:
    """An allowed-signers file (``principal namespaces="git" key``) for ``gpg.ssh.allowedSignersFile``."""
    return "".join(f'{who} namespaces="git" {key}\n' for who, key in sorted(entries))


def split_armored(raw: bytes) -> tuple[bytes, bytes] | None:
    """Split a signed tag object into (payload, signature), or None if it carries none."""
    at = raw.find(BEGIN.encode())
    if at < 0:
        return None
    return raw[:at], raw[at:]
