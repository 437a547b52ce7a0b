"""DSSE envelopes (secure-systems-lab/dsse v1) signed with SSH keys (SSHSIG).

An envelope carries a payload, its type and signatures over the DSSE pre-authentication
encoding ``PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload``; a
signature here is an armored SSHSIG in the namespace :data:`NAMESPACE`, so ``ssh-keygen -Y
verify -n aismm-dsse`` checks it over the PAE bytes too. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aismm.core.errors import SignatureError
from aismm.core.signing import PrivateKey, fingerprint, sign, verify

__all__ = ["NAMESPACE", "open_envelope", "pae", "seal"]

NAMESPACE = "aismm-dsse"
MAX_ENVELOPE = 16 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of a payload and its type."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def seal(payload: bytes, payload_type: str, key: PrivateKey) -> bytes:
    """The envelope (canonical JSON, trailing newline) of ``payload`` signed by ``key``."""
    sig = sign(key, pae(payload_type, payload), NAMESPACE)
    data = {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": payload_type,
            "signatures": [{"keyid": fingerprint(key.public_line),
                            "sig": base64.b64encode(sig.encode("ascii")).decode("ascii")}]}
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def open_envelope(data: bytes, payload_type: str, trusted: list[str]) -> tuple[bytes, str]:
    """The payload of an envelope and the key line that signed it, or SignatureError.

    ``trusted`` lists the ``ssh-ed25519 …`` lines whose signature is accepted; the envelope
    must name ``payload_type`` and carry one valid signature by one of them.
    """
    if len(data) > MAX_ENVELOPE:
        raise SignatureError("envelope: larger than 16 MiB; not an export envelope")
    try:
        doc: Any = json.loads(data)
        kind, payload_b64, sigs = doc["payloadType"], doc["payload"], doc["signatures"]
        if not (isinstance(kind, str) and isinstance(payload_b64, str) and
                isinstance(sigs, list) and sigs and all(isinstance(s, dict) for s in sigs)):
            raise TypeError("fields of the wrong type")
        payload = base64.b64decode(payload_b64, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"envelope: malformed DSSE JSON ({exc}); re-export") from exc
    if kind != payload_type:
        raise SignatureError(f"envelope: payload type {kind!r} is not {payload_type!r}; "
                             "pass an AISMM export")
    wanted = {" ".join(line.split()[:2]) for line in trusted}
    problems = []
    for entry in sigs:
        try:
            armored = base64.b64decode(str(entry.get("sig", "")), validate=True)
            signer = verify(armored, pae(kind, payload), NAMESPACE)
        except (SignatureError, binascii.Error, ValueError) as exc:
            problems.append(str(exc))
            continue
        if signer in wanted:
            return payload, signer
        problems.append(f"signed by {fingerprint(signer)}, not a trusted key")
    raise SignatureError(f"envelope: no valid signature by the platform key "
                         f"({'; '.join(problems) or 'none'}); the export was not made by "
                         "this platform or was altered")
