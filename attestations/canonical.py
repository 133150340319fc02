"""Deterministic JSON bytes and digests shared by statements and envelopes.

Signatures and digests are computed over bytes, so every producer and verifier must turn the
same JSON value into the same bytes. Sorted keys, compact separators and UTF-8 give that for the
values we sign (strings, integers, booleans, null, lists, objects and the floats Python prints
with ``repr``). It is deliberately not full RFC 8785: we only ever re-serialise our own output.
"""

import hashlib
import json
from typing import Any

__all__ = ["canonical_bytes", "sha256_hex"]


def canonical_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` as compact, key-sorted UTF-8 JSON.

    NaN and infinities are refused (``ValueError``) because they are not JSON and other
    verifiers would reject or reinterpret them.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256, the digest form used in in-toto subjects."""
    return hashlib.sha256(data).hexdigest()
