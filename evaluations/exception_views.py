"""The change page's policy-exception section: the request form for those who may edit the
change, approve buttons for eligible admins and reviewers (docs/GATE.md). Thin: the
services decide; a refusal comes back as a message with its reasons."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from changes import permissions, states
from changes.selectors import change_for
from core import roles
from core.errors import DomainError
from core.ui import or_404

from . import exception_selectors, exception_services, gates
from .models import PolicyException

ANCHOR = "#policy-exceptions"


def panel(request, change) -> str | None:
    """The section, or None when there is nothing to show or do."""
    user = request.user
    rows = exception_selectors.exceptions_for(change)
    editable = change.state in states.EDITABLE_IN_PLACE
    may_request = editable and permissions.can_edit_change(user, change)
    if not rows and not may_request:
        return None
    items = []
    for exc in rows:
        status = exception_selectors.status(exc, change)
        live = status == "pending" and editable and exc.content_sha256 == change.content_sha256
        can = {
            role: live
            and getattr(exc, f"{role}_approver_id") is None
            and not exception_services.ROLES[role](user, change, exc)
            for role in ("admin", "reviewer")
        }
        items.append(
            {
                "exc": exc,
                "status": status,
                "label": status.replace("_", " "),  # "in_effect" reads "in effect"
                "problems": exception_selectors.problems(exc, change),
                "can_admin": can["admin"],
                "can_reviewer": can["reviewer"],
            }
        )
    keys = [k for k, d in gates.TIGHTENS.items() if d is not None]
    context = {
        "change": change,
        "items": items,
        "may_request": may_request,
        "keys": keys,
        "floors": gates.DEFAULT_POLICIES[change.system.criticality],
        "is_admin": roles.is_admin(user),
    }
    return render_to_string("evaluations/_policy_exceptions.html", context, request=request)


def _back(change):
    return redirect(reverse("change-detail", args=[change.pk]) + ANCHOR)


def _value(text: str):
    """The form's value box: a number or false (JSON), else the raw text (then refused)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


@login_required
@require_POST
def request_exception(request, pk):
    change = or_404(change_for, request.user, pk)
    try:
        exc = exception_services.policy_exception_request(
            actor=request.user,
            change_request=change,
            key=request.POST.get("key", ""),
            value=_value(request.POST.get("value", "")),
            reason=request.POST.get("reason", ""),
        )
    except DomainError as error:
        messages.error(request, " ".join([error.detail, *error.reasons]))
    else:
        messages.success(request, f"{exc.reference} requested; it needs an admin and a reviewer.")
    return _back(change)


@login_required
@require_POST
def approve_exception(request, pk):
    try:
        exc = PolicyException.objects.get(pk=pk)
    except PolicyException.DoesNotExist:
        raise Http404("No such policy exception.") from None
    change = or_404(change_for, request.user, exc.change_id)
    try:
        exc = exception_services.policy_exception_approve(
            actor=request.user, exception=exc, as_role=request.POST.get("as_role", "")
        )
    except DomainError as error:
        messages.error(request, " ".join([error.detail, *error.reasons]))
    else:
        done = "in effect" if exc.approved else "approved; it needs the other approval"
        messages.success(request, f"{exc.reference} {done}.")
    return _back(change)
