"""The page kit every app's ``views.py`` uses: denials (audited, as the API does), domain
errors as messages or form errors, pagination and the not-visible-is-404 lookup."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404

from . import audit
from .errors import DomainError, NotAllowed

PAGE_SIZE = 25


def or_404(lookup, *args, detail: str = "Not found.", **kwargs):
    """``lookup(*args, **kwargs)`` (a scoped selector), with "does not exist" as a 404, so an
    object the user may not see answers exactly like one that is not there."""
    try:
        return lookup(*args, **kwargs)
    except ObjectDoesNotExist:
        raise Http404(detail) from None


def audit_denial(request, detail: str) -> None:
    """Permission denials are audited, as the API does."""
    audit.record_denial(request, detail)


def deny(request, detail: str):
    audit_denial(request, detail)
    raise PermissionDenied(detail)


def requires(rule, detail: str):
    """View decorator: the page is for users ``rule(user)`` allows (a predicate from the app's
    ``permissions.py``); anyone else gets an audited 403 with ``detail``, before the view runs.

    Goes under ``@login_required``, so an anonymous visitor is sent to log in, not refused.
    """

    def decorate(view):
        @wraps(view)
        def gated(request, *args, **kwargs):
            if not rule(request.user):
                deny(request, detail)
            return view(request, *args, **kwargs)

        return gated

    return decorate


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
