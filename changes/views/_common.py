"""Helpers shared by the UI views: scoped lookups, denials, domain errors as messages."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.template.loader import render_to_string

from .. import audit, hooks, selectors
from ..errors import DomainError, NotAllowed, as_domain_error
from ..models import ChangeRequest

logger = logging.getLogger(__name__)

PAGE_SIZE = 25


def change_or_404(user, pk) -> ChangeRequest:
    """A change the user may see; anything else is a 404 (no leak of its existence)."""
    try:
        return selectors.change_for(user, pk)
    except ChangeRequest.DoesNotExist:
        raise Http404("No such change.") from None


def audit_denial(request, detail: str) -> None:
    """Permission denials are audited, as the API does."""
    user = request.user
    audit.append(
        actor=user if user.is_authenticated else None,
        verb="permission.denied",
        object_type="request",
        object_id="",
        data={"path": request.path, "method": request.method, "detail": detail},
    )


def deny(request, detail: str):
    audit_denial(request, detail)
    raise PermissionDenied(detail)


def domain_error(exc: Exception) -> DomainError | None:
    return as_domain_error(exc)


def report(request, error: DomainError) -> None:
    """Show a domain error as messages: the detail, then every reason not already in it."""
    if isinstance(error, NotAllowed):
        audit_denial(request, error.detail)
    messages.error(request, error.detail)
    for reason in error.reasons:
        if reason not in error.detail:
            messages.error(request, reason)


def attach_to_form(form, error: DomainError) -> None:
    """Put a service's error next to the field it names (``"field: message"``), else on top."""
    placed = False
    for name, msgs in (error.fields or {}).items():
        if name in form.fields:
            for msg in msgs if isinstance(msgs, list | tuple) else [msgs]:
                form.add_error(name, str(msg))
            placed = True
    if not placed:
        field, sep, message = error.detail.partition(": ")
        base = field.split("[", 1)[0].split(".", 1)[0]
        if sep and base in form.fields and base == field:
            form.add_error(base, message[:1].upper() + message[1:])
        else:
            form.add_error(None, error.detail)
    for reason in error.reasons:
        if reason not in error.detail:
            form.add_error(None, reason)


def paginate(request, queryset, per_page: int = PAGE_SIZE):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def render_panel(port, change, request) -> tuple[str | None, bool]:
    """(html, failed) for a hook's panel: (None, False) when the hook has no panel."""
    try:
        result = port.panel(change, request.user)
        if result is None:
            return None, False
        template_name, context = result
        html = render_to_string(
            template_name, {"change": change, **(context or {})}, request=request
        )
        return html, False
    except Exception:  # a broken panel must not take the change page down with it
        logger.exception("The %s panel failed for change %s", type(port).__name__, change.pk)
        return None, True


def evaluation_panel(change, request):
    return render_panel(hooks.evaluation(), change, request)


def attestation_panel(change, request):
    return render_panel(hooks.attestation(), change, request)


def slot_panels(slot: str, request, **objects) -> list[str]:
    """HTML of every panel registered for ``slot`` (a failing one is logged and skipped)."""
    out = []
    for panel in hooks.panels(slot):
        try:
            html = panel(request, **objects)
        except Exception:  # a broken panel must not take the page down with it
            logger.exception("The %s panel %r failed", slot, panel)
            continue
        if html:
            out.append(html)
    return out
