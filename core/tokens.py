"""What an API token key looks like and which scope a request needs; no storage here.

Issuing, rotating and revoking tokens are audited writes of ``changes.tokens``; the
authentication class (``core.authentication``) needs only the key's shape, its hash and
the scope rule below. Design notes: ``docs/api-tokens.md``.
"""

from __future__ import annotations

import hashlib

KEY_PREFIX = "pcm_"
# Unsafe requests that need a scope other than ``write``, by URL name.
SCOPE_BY_URL_NAME = {
    "api-change-deploy": "deploy",
    "api-suite-list": "ingest",
    "api-protocol-list": "ingest",
    "api-attestation-verify": "ingest",
    "api-token-rotate": "read",  # any valid token may replace itself
    "api-token-revoke": "read",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def required_scope(request) -> str:
    """The scope a request needs: ``read`` for safe methods, else by URL name or ``write``."""
    method = getattr(request, "method", "GET").upper()
    match = getattr(getattr(request, "_request", request), "resolver_match", None)
    name = getattr(match, "url_name", None)
    if name in SCOPE_BY_URL_NAME and method not in SAFE_METHODS:
        return SCOPE_BY_URL_NAME[name]
    return "read" if method in SAFE_METHODS else "write"
