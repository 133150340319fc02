"""Monitoring pages: live status and chart per system, the review queue, incidents."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from changes.models import AISystem
from core.errors import DomainError

from . import charts, discrepancy, permissions, review, selectors, services
from .forms import IncidentActionForm, MonitorForm, ReviewForm, TokenForm
from .live import live_map
from .models import Incident, Monitor, ReviewItem


@login_required
@require_GET
def system_monitoring(request, pk):
    system = get_object_or_404(AISystem, pk=pk)
    lives = live_map(system)
    panels = []
    seen = set()
    for current in lives.values():
        change = current.change
        if change is None or change.pk in seen:
            continue
        seen.add(change.pk)
        for row in discrepancy.assess(change):
            ref = row["reference"]
            points = discrepancy.series(
                change, row["environment"], row["alpha"], ref["lower"] if ref else 0.5
            )
            svg = charts.live_vs_evaluated(
                points, ref, title=f"{change.reference} in {row['environment']}"
            )
            panels.append({"change": change, "row": row, "chart": mark_safe(svg)})  # noqa: S308 - built by ElementTree, escaped
    judges = [
        {"change": change, "summary": summary, "chart": mark_safe(  # noqa: S308 - ElementTree
            charts.judge_verdicts(summary, heading=f"{change.reference} judge"))}
        for change, summary in selectors.judge_summaries(seen)
    ]  # fmt: skip
    context = {
        "system": system,
        "lives": lives,
        "panels": panels,
        "judges": judges,
        "incidents": Incident.objects.filter(system=system).select_related("change")[:50],
        "estimates": review.estimates(system.pk),
        "queue_size": ReviewItem.objects.filter(system=system, reviewed_at__isnull=True).count(),
        "can_manage": permissions.can_manage_tokens(request.user, system),
        "token_form": TokenForm(),
    }
    return render(request, "monitoring/system.html", context)


@login_required
@require_POST
def token_create(request, pk):
    system = get_object_or_404(AISystem, pk=pk)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the token a name and a rate between 1 and 100000.")
        return redirect("monitoring-system", pk=pk)
    try:
        _, secret = services.ingest_token_create(
            actor=request.user, system=system, **form.cleaned_data
        )
    except DomainError as error:
        messages.error(request, error.detail)
        return redirect("monitoring-system", pk=pk)
    return render(request, "monitoring/token_created.html", {"system": system, "secret": secret})


@login_required
@require_http_methods(["GET", "POST"])
def review_queue(request, pk):
    system = get_object_or_404(AISystem, pk=pk)
    if request.method == "POST":
        item = get_object_or_404(ReviewItem, pk=request.POST.get("item"), system=system)
        form = ReviewForm(request.POST)
        if form.is_valid():
            try:
                review.review_submit(actor=request.user, item=item, **form.cleaned_data)
                messages.success(request, "Review recorded.")
                return redirect("monitoring-review", pk=pk)
            except DomainError as error:
                messages.error(request, error.detail)
        else:
            messages.error(request, "Choose a verdict.")
        return redirect("monitoring-review", pk=pk)
    item = selectors.next_review_item(system, request.user)
    return render(
        request,
        "monitoring/review.html",
        {"system": system, "item": item, "form": ReviewForm(), "estimates": review.estimates(pk)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def incident_detail(request, pk):
    incident = get_object_or_404(
        Incident.objects.select_related("system", "change", "owner"), pk=pk
    )
    if request.method == "POST":
        form = IncidentActionForm(request.POST)
        if form.is_valid():
            try:
                services.incident_transition(
                    actor=request.user, incident=incident, **form.cleaned_data
                )
                messages.success(request, "Incident updated.")
            except DomainError as error:
                messages.error(request, error.detail)
        return redirect("monitoring-incident", pk=pk)
    target = selectors.rollback_target(incident)
    rollback_url = None
    if target and target["proposed"]:
        rollback_url = "/changes/new/?" + urlencode(target)
    return render(
        request,
        "monitoring/incident.html",
        {
            "incident": incident,
            "events": incident.events.select_related("actor"),
            "rollback_url": rollback_url,
            "form": IncidentActionForm(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def change_monitor(request, pk):
    """Declare (or show) how a change's protocol is recognised in live outputs."""
    from django.http import Http404

    from changes import selectors as change_selectors
    from changes.models import ChangeRequest

    try:
        change = change_selectors.change_for(request.user, pk)
    except ChangeRequest.DoesNotExist:
        raise Http404("No such change.") from None
    monitor = Monitor.objects.filter(change=change).first()
    if request.method == "POST":
        form = MonitorForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                services.monitor_set(actor=request.user, change=change, **form.cleaned_data)
                messages.success(request, "Monitor saved.")
                return redirect("monitoring-change-monitor", pk=pk)
            except DomainError as error:
                form.add_error(None, "; ".join(error.reasons or [error.detail]))
                status = error.status_code
        return render(
            request, "monitoring/monitor.html",
            {"change": change, "monitor": monitor, "form": form}, status=status,
        )  # fmt: skip
    initial = {}
    if monitor is not None:
        initial = {
            "graders": monitor.graders,
            "evaluated_condition": monitor.evaluated_condition,
            "alpha": monitor.alpha,
        }
    form = MonitorForm(initial=initial)
    return render(
        request, "monitoring/monitor.html", {"change": change, "monitor": monitor, "form": form}
    )
