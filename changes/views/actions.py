"""Small POST views that each call one service, and the review/sign-off page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import DomainError, InvalidTransition, NotAllowed, as_domain_error
from core.ui import attach_to_form, audit_denial, deny, report

from .. import env_selectors, permissions, selectors, services
from ..forms import DeployForm, ReviewForm, WithdrawForm
from ._common import change_or_404


def _run(request, change, action, success: str):
    """Call ``action()``; a domain error becomes messages. Always back to the change page."""
    try:
        action()
    except (DomainError, InvalidTransition) as exc:
        report(request, as_domain_error(exc))
    else:
        messages.success(request, success)
    return redirect("change-detail", pk=change.pk)


@login_required
@require_POST
def change_submit(request, pk):
    change = change_or_404(request.user, pk)
    return _run(
        request,
        change,
        lambda: services.change_request_submit(actor=request.user, change_request=change),
        f"{change.reference} submitted: its evaluation runs have started.",
    )


@login_required
@require_POST
def change_withdraw(request, pk):
    change = change_or_404(request.user, pk)
    form = WithdrawForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _run(
        request,
        change,
        lambda: services.change_request_withdraw(
            actor=request.user, change_request=change, reason=reason
        ),
        f"{change.reference} withdrawn.",
    )


@login_required
@require_POST
def change_close(request, pk):
    change = change_or_404(request.user, pk)
    return _run(
        request,
        change,
        lambda: services.change_request_close(actor=request.user, change_request=change),
        f"{change.reference} closed.",
    )


@login_required
@require_POST
def change_confirm_emergency(request, pk):
    """The change page's button for ``change_request_confirm_emergency`` (the same service and
    independence check as ``POST /api/v1/changes/{id}/confirm-emergency/``)."""
    change = change_or_404(request.user, pk)
    return _run(
        request,
        change,
        lambda: services.change_request_confirm_emergency(
            actor=request.user, change_request=change
        ),
        f"Emergency of {change.reference} confirmed for this content.",
    )


@login_required
@require_GET
def change_deploy_confirm(request, pk):
    """The confirmation step before a deploy: names the system, the protocol version and its
    hash, and the environment that will run it. Deploying is the POST from this page."""
    change = change_or_404(request.user, pk)
    if not permissions.can_deploy(request.user):
        deny(request, "Only engineers and pipeline tokens deploy.")
    form = DeployForm(request.GET, system=change.system)
    if not form.is_valid():
        messages.error(request, "Choose the environment to deploy to.")
        return redirect("change-detail", pk=change.pk)
    env = env_selectors.environment_named(change.system, form.cleaned_data["environment"])
    override = form.cleaned_data["blackout_override"]
    gate = selectors.gate(change, env, user=request.user, blackout_override=override)
    context = {
        "blackout_override": override,
        "change": change,
        "environment": form.cleaned_data["environment"],
        "gate": gate,
        "live": selectors.live_protocol(change.system, form.cleaned_data["environment"]),
    }
    return render(request, "changes/deploy_confirm.html", context)


@login_required
@require_POST
def change_deploy(request, pk):
    change = change_or_404(request.user, pk)
    form = DeployForm(request.POST, system=change.system)
    if not form.is_valid():
        messages.error(request, "environment: choose one of the listed environments.")
        return redirect("change-detail", pk=change.pk)
    environment = form.cleaned_data["environment"]
    override = form.cleaned_data["blackout_override"]
    return _run(
        request,
        change,
        lambda: services.change_request_deploy(
            actor=request.user,
            change_request=change,
            environment=environment,
            blackout_override=override,
        ),
        f"{change.reference} deployed to {environment}.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def change_review(request, pk):
    """Shows exactly what is signed; signing re-enters the password. The service decides."""
    change = change_or_404(request.user, pk)
    check = permissions.check_independence(request.user, change)
    open_for_review = permissions.is_open_for_review(change)
    status = 200
    if request.method == "POST":
        form = ReviewForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                review = services.review_submit(
                    actor=request.user,
                    change_request=change,
                    decision=data["decision"],
                    comment=data["comment"],
                    password=data["password"],
                    expected_sha256=data["expected_sha256"],
                    acknowledge_flagged_reasoning=data["acknowledge_flagged_reasoning"],
                )
            except (DomainError, InvalidTransition) as exc:
                error = as_domain_error(exc)
                if isinstance(error, NotAllowed):
                    audit_denial(request, error.detail)
                if error.code == "reauthentication_failed":
                    form.add_error("password", error.detail)
                else:
                    attach_to_form(form, error)
                status = error.status_code
            else:
                messages.success(request, f"Signed: “{review.signature_meaning}”")
                return redirect("change-detail", pk=change.pk)
        else:
            status = 400
    else:
        form = ReviewForm(initial={"expected_sha256": change.content_sha256})
    context = {
        "change": change,
        "form": form,
        "check": check,
        "open_for_review": open_for_review,
        "meanings": {
            d: services.signature_meaning(change, d)
            for d in ("approve", "request_changes", "reject")
        },
        "approvals_required": services.required_approvals(change),
    }
    return render(request, "changes/review.html", context, status=status)
