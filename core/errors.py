"""Domain errors and their central mapping to API responses.

Services raise these; views never build error responses by hand. Every error body is
``{"detail": "...", "code": "..."}`` (plus ``reasons``/``fields`` where useful).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from . import audit


class InvalidTransition(Exception):
    """A state graph (``core.states.StateGraph``) refuses ``current -> target``; answered as
    409 ``invalid_transition``.

    One class for every graph, so a caller that catches it (or the API's handler) needs to know
    no app; ``noun`` says whose graph refused ("change", "evaluation run", "attestation") and
    ``labels`` give the statuses' human names where the graph has them.
    """

    def __init__(self, noun: str, current: str, target: str, *, labels=None):
        labels = labels or {}
        self.noun, self.current, self.target = noun, current, target
        self.current_label = labels.get(current, current)
        self.target_label = labels.get(target, target)
        article = "An" if noun[:1].lower() in "aeiou" else "A"
        super().__init__(
            f"{article} {noun} in state '{self.current_label}' cannot move to "
            f"'{self.target_label}'."
        )


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, reasons=None, fields=None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.reasons = list(reasons or [])
        self.fields = fields or {}

    def as_dict(self) -> dict:
        body = {"detail": self.detail, "code": self.code}
        if self.reasons:
            body["reasons"] = self.reasons
        if self.fields:
            body["fields"] = self.fields
        return body


class ValidationFailed(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"


class NotAllowed(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


def as_domain_error(exc: Exception) -> DomainError | None:
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, InvalidTransition):
        return Conflict(str(exc), code="invalid_transition")
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
            first = next(iter(fields.items()))
            return ValidationFailed(f"{first[0]}: {first[1][0]}", fields=fields)
        return ValidationFailed("; ".join(str(m) for m in exc.messages))
    return None


def _flatten(detail, prefix="") -> list[str]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}." if name else prefix)
        return out
    if isinstance(detail, list):
        out = []
        for i, value in enumerate(detail):
            sub = prefix if not isinstance(value, dict | list) else f"{prefix}{i}."
            out += _flatten(value, sub)
        return out
    return [f"{prefix.rstrip('.')}: {detail}" if prefix else str(detail)]


def api_exception_handler(exc, context):
    """DRF exception handler: domain errors -> 400/403/409, everything as detail + code."""
    domain = as_domain_error(exc)
    if domain is not None:
        _audit_denial(domain, context)
        retry_after = getattr(domain, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return Response(domain.as_dict(), status=domain.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        messages = _flatten(exc.detail)
        response.data = {
            "detail": messages[0] if messages else "Invalid input.",
            "code": "invalid",
            "fields": exc.detail,
        }
    elif isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data = {"detail": str(detail), "code": getattr(detail, "code", "error")}
    if response.status_code == 403:
        _audit_denial(NotAllowed(response.data.get("detail", "")), context)
    return response


def _audit_denial(error: DomainError, context) -> None:
    if error.status_code != status.HTTP_403_FORBIDDEN:
        return
    audit.record_denial(context.get("request"), error.detail)
