"""Auditor pages: every change, the audit log with filters and exports, chain verification."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from core.ui import deny, paginate

from .. import checkpoints, hooks, permissions, selectors
from ..forms import AuditFilterForm, ChangeFilterForm

AUDIT_PAGE_SIZE = 50


def _require_auditor(request):
    if not permissions.can_read_audit(request.user):
        deny(request, "Only auditors and admins read the audit pages.")


def _day_bounds(data):
    tz = timezone.get_current_timezone()
    since = until = None
    if data.get("since"):
        since = dt.datetime.combine(data["since"], dt.time.min, tzinfo=tz)
    if data.get("until"):
        until = dt.datetime.combine(data["until"], dt.time.max, tzinfo=tz)
    return since, until


@login_required
@require_GET
def audit_log(request):
    _require_auditor(request)
    form = AuditFilterForm(request.GET or None)
    filters = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        since, until = _day_bounds(data)
        filters = {
            "verb": data.get("verb") or None,
            "actor": data.get("actor") or None,
            "object_type": data.get("object_type") or None,
            "object_id": data.get("object_id") or None,
            "since": since,
            "until": until,
        }
    events = selectors.audit_events(**filters).order_by("-id")
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    export = "/api/v1/audit/events/?"
    return render(
        request,
        "changes/audit_log.html",
        {
            "form": form,
            "page": paginate(request, events, AUDIT_PAGE_SIZE),
            "export_jsonl": export + urlencode({"format": "jsonl", **query}),
            "export_csv": export + urlencode({"format": "csv", **query}),
            "filtered": bool(query),
            # Where the chain is anchored outside the database (docs/AUDIT.md).
            "checkpoint": checkpoints.latest_checkpoint(),
        },
    )


@login_required
@require_POST
def audit_verify(request):
    _require_auditor(request)
    report = checkpoints.verify_anchored()
    problem = report.chain_problem
    if report.ok:
        cp = report.checkpoint
        anchor = (
            f" It agrees with the newest signed {cp.describe()}."
            if cp
            else " No checkpoint has been published yet, so it is anchored nowhere."
        )
        messages.success(
            request, f"The audit chain is intact: {report.events:,} events verified.{anchor}"
        )
    elif problem is not None:
        messages.error(
            request,
            f"The audit chain is broken at event #{problem.event_id}: {problem.reason} "
            f"({report.events:,} events before it verified).",
        )
    else:
        messages.error(request, f"The audit chain is broken: {report.reason}.")
    return redirect("audit-log")


@login_required
@require_GET
def audit_changes(request):
    _require_auditor(request)
    form = ChangeFilterForm(request.GET or None)
    changes = form.apply(selectors.visible_changes(request.user)).annotate(
        live_approvals=Count(
            "reviews", filter=Q(reviews__decision="approve", reviews__voided_at__isnull=True)
        )
    )
    page = paginate(request, changes)
    page.object_list = list(page.object_list)
    # A PDF link only where an attestation is ready: a link to nothing is a 404 for auditors.
    statuses = hooks.attestation().statuses([c.pk for c in page.object_list])
    for change in page.object_list:
        change.attestation_status = statuses.get(change.pk)
    return render(
        request,
        "changes/audit_changes.html",
        {"form": form, "page": page, "filtered": form.has_changed()},
    )
