"""What core borrows from the domain apps, lent at ``AppConfig.ready`` (never imported).

Core sits below every app, so it cannot import the audit log or the token model of
``changes``. Two small ports stand in for them, filled by ``changes.apps.ChangesConfig.ready``
the way ``changes.hooks`` is filled by the later apps. Why a port rather than moving the
models into core: see "The core app" in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

_audit_writer = None
_token_model = None


def register_audit_writer(writer) -> None:
    """``writer(*, actor, verb, object_type, object_id, data)`` appends one audit event."""
    global _audit_writer
    _audit_writer = writer


def register_token_model(model) -> None:
    """The API token model: ``key_sha256``, ``prefix``, ``scopes``, ``created_at``,
    ``expires_at``, ``revoked_at`` and a ``user`` foreign key."""
    global _token_model
    _token_model = model


def audit(*, actor, verb: str, object_type: str, object_id: str, data: dict) -> None:
    """Append an audit event through the registered writer; refuse loudly without one, so a
    denial is never silently unrecorded."""
    if _audit_writer is None:
        raise ImproperlyConfigured("No audit writer registered (is 'changes' installed?).")
    _audit_writer(actor=actor, verb=verb, object_type=object_type, object_id=object_id, data=data)


def token_model():
    if _token_model is None:
        raise ImproperlyConfigured("No API token model registered (is 'changes' installed?).")
    return _token_model
