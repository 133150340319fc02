"""The API kit every app's ``apis.py`` uses: documented errors, pagination, input parsing,
role gates and the not-visible-is-404 lookup.

Errors themselves are rendered centrally by ``core.errors.api_exception_handler``.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ErrorSerializer(serializers.Serializer):
    """Every error body: ``detail`` in words and a machine-readable ``code``."""

    detail = serializers.CharField()
    code = serializers.CharField()
    reasons = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Every unmet condition (deploy gate, independence rules).",
    )
    fields = serializers.DictField(
        required=False, help_text="Field name -> list of messages, for invalid input."
    )


_ERROR_TEXT = {
    400: "Invalid input: `detail` names the first bad field, `fields` lists them all.",
    401: "Not authenticated: send `Authorization: Token <token>`.",
    403: "Not allowed (role, independence rule, re-authentication); audited as "
    "`permission.denied`. Independence failures list every `reasons`.",
    404: "No such object, or not visible to you; on a list, no such page (`page` past the "
    "end or not a positive integer) or no such `format`.",
    409: "Not allowed in the current state: `invalid_transition`, `stale_content`, "
    "`duplicate_approval`, `not_editable`, `duplicate`, or `gate_closed` with `reasons`; "
    "deploys also `stale_base`, `out_of_order`, `blackout`, `already_deployed`.",
    429: "Too many requests: too many waiting at once (`throttled`) or too many wrong "
    "passwords (`too_many_attempts`); retry after `Retry-After` seconds.",
}


def errors(*codes: int, media_type: str | None = None) -> dict:
    """Documented error responses (bodies are ``{"detail", "code", ...}``)."""
    return {
        ((code, media_type) if media_type else code): OpenApiResponse(
            ErrorSerializer, description=_ERROR_TEXT[code]
        )
        for code in codes
    }


class Pagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100


def parse(serializer_class, data, request, **kwargs) -> dict:
    """Validate ``data`` with an input serializer; invalid input raises 400."""
    serializer = serializer_class(data=data, context={"request": request}, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def or_404(lookup, *args, detail: str = "Not found.", **kwargs):
    """``lookup(*args, **kwargs)`` (a scoped selector), with "does not exist" as a 404, so an
    object the user may not see answers exactly like one that is not there."""
    try:
        return lookup(*args, **kwargs)
    except ObjectDoesNotExist:
        raise NotFound(detail) from None


class RoleGate(BasePermission):
    """Refuses a role-gated write before its input is parsed (the service checks again), so
    a refused user gets 403 whatever the body. Reads pass unless ``gate_reads``.

    Subclasses name the rule (``allows``, from their app's ``permissions.py``) and the
    ``message``; the rule stays in the app, the mechanics live here.
    """

    gate_reads = False
    gated_methods = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def allows(self, user) -> bool:
        raise NotImplementedError

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS and not self.gate_reads:
            return True
        if request.method not in SAFE_METHODS and request.method not in self.gated_methods:
            return True
        return self.allows(request.user)
