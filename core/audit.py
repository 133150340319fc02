"""The permission-denied audit event, written the same way by the API and the pages."""

from __future__ import annotations

from . import ports


def record_denial(request, detail: str) -> None:
    """Append ``permission.denied`` for ``request`` (its user, path, method and the reason)."""
    user = getattr(request, "user", None)
    ports.audit(
        actor=user if getattr(user, "is_authenticated", False) else None,
        verb="permission.denied",
        object_type="request",
        object_id="",
        data={
            "path": getattr(request, "path", ""),
            "method": getattr(request, "method", ""),
            "detail": detail,
        },
    )
