"""DSSE v1 envelopes: how the statement is signed.

DSSE (Dead Simple Signing Envelope) signs the payload together with its type through the
pre-authentication encoding, so a signature over one kind of document can never be replayed as
another, and the payload is signed as opaque bytes, so no JSON canonicalisation sits between
the signer and the verifier. It is the envelope in-toto attestations use.

Spec: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md

Verification here is deliberately strict, because an auditor's answer must be "invalid" for any
altered envelope:

* every signature in the envelope must come from a trusted key id and verify (we only ever sign
  once, so an extra or unknown signature is a sign of tampering, not a co-signer);
* base64 must be canonical (re-encoding the decoded bytes gives the same text), otherwise the
  unused low bits of the last character could be changed without changing the decoded bytes;
* given bytes, the envelope must be exactly what ``envelope_bytes`` produces, so even a JSON
  no-op such as extra whitespace changes the answer.
"""

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import canonical_bytes
from .checks import Check, check

__all__ = [
    "PAYLOAD_TYPE",
    "envelope_bytes",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"

# Uploaded files are untrusted; an envelope is a few kilobytes, so refuse absurd sizes before
# parsing them.
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024


class SupportsSign(Protocol):
    key_id: str

    def sign(self, data: bytes) -> bytes: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-authentication encoding: the exact bytes that are signed.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths in ASCII decimal bytes.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_canonical(text: Any) -> bytes | None:
    """Decode standard base64, or None unless ``text`` is the one canonical encoding."""
    if not isinstance(text, str):
        return None
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return data if _b64encode(data) == text else None


def sign_envelope(payload: bytes, signer: SupportsSign, payload_type: str = PAYLOAD_TYPE) -> dict:
    """Sign ``payload`` and wrap it in a DSSE envelope (a JSON-ready dict).

    ``signer`` is anything with ``key_id`` and ``sign(bytes) -> bytes``, normally
    ``attestations.keys.Signer``.
    """
    signature = signer.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": _b64encode(payload),
        "signatures": [{"keyid": signer.key_id, "sig": _b64encode(signature)}],
    }


def envelope_bytes(envelope: dict) -> bytes:
    """The one serialisation of an envelope that is stored, embedded and verified."""
    return canonical_bytes(envelope)


def _parse(envelope: dict | bytes | str, require_canonical: bool) -> tuple[Any, Check]:
    name = "envelope_parses"
    if isinstance(envelope, dict):
        return envelope, check(name, True, "given as a JSON object")
    if isinstance(envelope, str):
        envelope = envelope.encode("utf-8", errors="surrogatepass")
    if not isinstance(envelope, bytes | bytearray | memoryview):
        return None, check(name, False, f"unsupported input type {type(envelope).__name__}")
    raw = bytes(envelope)
    if len(raw) > MAX_ENVELOPE_BYTES:
        return None, check(name, False, f"{len(raw)} bytes is larger than any envelope we write")
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, check(name, False, f"not UTF-8 JSON: {type(exc).__name__}")
    if not isinstance(parsed, dict):
        return None, check(name, False, "the JSON is not an object")
    if require_canonical:
        try:
            canonical = envelope_bytes(parsed) == raw
        except ValueError:
            canonical = False
        if not canonical:
            return None, check(name, False, "not in the canonical serialisation we sign")
    return parsed, check(name, True, f"{len(raw)} bytes of canonical JSON")


def _fields(envelope: dict) -> tuple[list[dict] | None, Check]:
    name = "envelope_fields"
    if set(envelope) != {"payloadType", "payload", "signatures"}:
        found = ", ".join(sorted(map(str, envelope))) or "none"
        return None, check(name, False, f"expected payloadType, payload, signatures; got {found}")
    if not isinstance(envelope["payloadType"], str) or not isinstance(envelope["payload"], str):
        return None, check(name, False, "payloadType and payload must be strings")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        return None, check(name, False, "signatures must be a non-empty list")
    for index, sig in enumerate(signatures):
        if not (
            isinstance(sig, dict)
            and set(sig) == {"keyid", "sig"}
            and isinstance(sig["keyid"], str)
            and isinstance(sig["sig"], str)
        ):
            return None, check(name, False, f"signatures[{index}] must be {{keyid, sig}} strings")
    return signatures, check(name, True, f"{len(signatures)} signature(s)")


def _signatures(
    payload_type: str,
    payload: bytes,
    signatures: list[dict],
    public_keys: Mapping[str, Ed25519PublicKey],
) -> Check:
    name = "signature"
    message = pae(payload_type, payload)
    verified = []
    for index, entry in enumerate(signatures):
        key_id = entry["keyid"]
        key = public_keys.get(key_id)
        if key is None:
            return check(name, False, f"signatures[{index}]: key id {key_id!r} is not trusted")
        sig = _b64decode_canonical(entry["sig"])
        if sig is None:
            return check(name, False, f"signatures[{index}]: sig is not canonical base64")
        try:
            key.verify(sig, message)
        except InvalidSignature:
            return check(name, False, f"signatures[{index}]: does not verify with {key_id}")
        except Exception as exc:  # a wrong key type in the trust store must not crash
            return check(name, False, f"signatures[{index}]: {type(exc).__name__}")
        verified.append(key_id)
    return check(name, True, "Ed25519 signature valid for " + ", ".join(verified))


def verify_envelope(
    envelope: dict | bytes | str,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    expected_payload_type: str = PAYLOAD_TYPE,
    require_canonical: bool = True,
) -> tuple[bool, bytes | None, list[Check]]:
    """Verify a DSSE envelope against trusted Ed25519 keys.

    Returns ``(valid, payload, checks)``. ``payload`` is the decoded payload only when ``valid``
    is true, so callers cannot act on unauthenticated bytes by mistake. Never raises on
    malformed input: each problem becomes a failing, named check and later checks are skipped.
    ``require_canonical`` applies to bytes input only (a dict has no byte form to compare).
    """
    checks: list[Check] = []
    parsed, parsed_check = _parse(envelope, require_canonical)
    checks.append(parsed_check)
    if parsed is None:
        return False, None, checks

    signatures, fields_check = _fields(parsed)
    checks.append(fields_check)
    if signatures is None:
        return False, None, checks

    payload_type = parsed["payloadType"]
    type_ok = payload_type == expected_payload_type
    checks.append(
        check(
            "payload_type",
            type_ok,
            f"{payload_type!r}"
            if type_ok
            else f"{payload_type!r}, expected {expected_payload_type!r}",
        )
    )

    payload = _b64decode_canonical(parsed["payload"])
    checks.append(
        check(
            "payload_base64",
            payload is not None,
            f"{len(payload)} bytes" if payload is not None else "not canonical base64",
        )
    )
    if payload is None or not type_ok:
        return False, None, checks

    checks.append(_signatures(payload_type, payload, signatures, public_keys))
    valid = all(item["ok"] for item in checks)
    return valid, payload if valid else None, checks
