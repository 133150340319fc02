"""Reading an Ed25519 private key as operators configure one: a PEM (from a file, or an
environment variable with its newlines written as ``\\n``) or the 32 raw bytes in base64.

The attestation signer and the audit checkpoint signer read the same settings (the
checkpoint key falls back to the attestation key), so they must read them the same way.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class UnreadableKey(ValueError):
    """The text is not an Ed25519 private key; the message names ``source`` and why."""


def ed25519_private_key(text: str, source: str, *, signs: str = "this") -> Ed25519PrivateKey:
    """The key in ``text``; ``source`` (a setting or a path) and ``signs`` (what the key
    signs, e.g. "attestations") only word the error."""
    text = text.strip()
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_private_key(
                text.replace("\\n", "\n").encode("ascii"), password=None
            )
        else:
            # Standard or URL-safe alphabet, padding optional: env values get mangled both ways.
            compact = "".join(text.split()).replace("-", "+").replace("_", "/")
            raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
            if len(raw) != 32:
                raise UnreadableKey(f"{source}: base64 key must decode to 32 bytes")
            key = Ed25519PrivateKey.from_private_bytes(raw)
    except UnreadableKey:
        raise
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise UnreadableKey(f"{source}: not a readable Ed25519 private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UnreadableKey(f"{source}: {signs} are signed with Ed25519 keys only")
    return key
