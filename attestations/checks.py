"""The one shape every verification step reports in.

Verification answers "valid / invalid with each check named" (issue 4), through the API, the
auditor page and ``manage.py verify_attestation``. Keeping the check a plain dict makes it JSON
ready, and a single constructor keeps the keys identical for the envelope checks written here and
the record checks added by the Django layer.
"""

from typing import TypedDict

__all__ = ["Check", "check"]


class Check(TypedDict):
    name: str
    ok: bool
    detail: str


def check(name: str, ok: bool, detail: str = "") -> Check:
    """Build a named check; ``detail`` says what was found, for people reading the result."""
    return {"name": name, "ok": bool(ok), "detail": detail}
