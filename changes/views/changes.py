"""Dashboard, change list, change page, create/edit forms and their htmx partials."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import roles
from core.errors import DomainError
from core.ids import parse_id
from core.ui import attach_to_form, deny, paginate

from .. import diff, env_selectors, hooks, permissions, selectors, services, states
from ..forms import (
    MARKDOWN_FIELDS,
    ChangeFilterForm,
    ChangeRequestForm,
    ExpectedChangeFormSet,
    environment_choices,
    expected_changes_from,
    is_older,
    live_protocol_of,
    protocols_for,
)
from ..markdown import render_markdown
from ..models import AISystem
from ._common import attestation_panel, change_or_404, evaluation_panel, slot_panels

PREVIEW_FIELDS = frozenset(MARKDOWN_FIELDS)
PREVIEW_MAX_CHARS = max(services.TEXT_LIMITS.values())
# Form fields passed to the services as they are.
_TEXT_AND_CHOICES = (
    "title",
    "rationale",
    "test_plan",
    "risk",
    "change_type",
    "rollout_plan",
    "backout_plan",
)


@login_required
@require_GET
def dashboard(request):
    data = selectors.dashboard(request.user)
    counts = data["counts"]
    context = {
        "mine": data["mine"],
        "awaiting_review": data["awaiting_review"],
        "recently_deployed": data["recently_deployed"],
        "state_counts": [(s, states.LABELS[s], counts.get(s, 0)) for s in states.STATES],
        "total": sum(counts.values()),
        "is_reviewer_role": roles.has_role(request.user, roles.REVIEWER),
        "extra_panels": slot_panels("dashboard", request),
    }
    return render(request, "changes/dashboard.html", context)


@login_required
@require_GET
def change_list(request):
    form = ChangeFilterForm(request.GET or None)
    page = paginate(request, form.apply(selectors.visible_changes(request.user)))
    return render(
        request,
        "changes/change_list.html",
        {"form": form, "page": page, "filtered": form.is_bound and form.has_changed()},
    )


def available_actions(user, change) -> dict:
    """Which buttons the change page offers this user; the services still decide."""
    may_review = permissions.is_open_for_review(change) and roles.has_role(user, roles.REVIEWER)
    if may_review:  # nothing left to do for someone whose approval of this content stands
        may_review = not change.reviews.filter(
            reviewer=user,
            decision="approve",
            voided_at__isnull=True,
            content_sha256=change.content_sha256,
        ).exists()
    return {
        "submit": permissions.can_submit_change(user, change)
        and states.can_transition(change.state, states.SUBMITTED),
        "edit": permissions.can_edit_change(user, change),
        "withdraw": permissions.can_withdraw_change(user, change)
        and states.can_transition(change.state, states.WITHDRAWN),
        "close": permissions.can_close_change(user, change),
        "review": may_review,
        "deploy": change.state == states.APPROVED and permissions.can_deploy(user),
        "confirm_emergency": _may_confirm_emergency(user, change),
        "emergency_open": change.is_emergency and _open(change),
    }


def _open(change) -> bool:
    return change.state not in states.TERMINAL and change.state != states.DEPLOYED


def _may_confirm_emergency(user, change) -> bool:
    """Offer the button only to someone the service would accept: an independent reviewer,
    on an emergency not yet confirmed for this content, still open. The author, editors and
    admins without the role never see it (the service refuses them anyway)."""
    if not change.is_emergency or change.emergency_confirmed or not _open(change):
        return False
    return permissions.check_independence(user, change).ok


@login_required
@require_GET
def change_detail(request, pk):
    change = change_or_404(request.user, pk)
    reviews = list(change.reviews.select_related("reviewer").order_by("created_at", "id"))
    gate = selectors.gate(change, user=request.user)
    valid_ids = {r.pk for r in selectors.valid_approvals(change)}
    eval_html, eval_failed = evaluation_panel(change, request)
    attest_html, attest_failed = attestation_panel(change, request)
    context = {
        "change": change,
        "diff_parts": diff.protocol_diff(change.base_protocol, change.proposed_protocol, context=4),
        "diff_mode": "unified" if request.GET.get("diff") == "unified" else "split",
        "gate": gate,
        "reviews": reviews,
        "valid_review_ids": valid_ids,
        "evaluation_panel": eval_html,
        "evaluation_panel_failed": eval_failed,
        "attestation_panel": attest_html,
        "attestation_panel_failed": attest_failed,
        "timeline": selectors.timeline(change),
        "actions": available_actions(request.user, change),
        "suites": hooks.evaluation().suite_refs(change),
        "deployments": list(change.deployments.select_related("deployed_by")),
        "goes_backwards": is_older(change.proposed_protocol, change.base_protocol),
        "deploy_environments": environment_choices(change.system),
        "extra_panels": slot_panels("change", request, change=change),
        **_environment_context(request.user, change),
    }
    if context["any_deployable"] and permissions.can_deploy(request.user):
        context["actions"]["deploy"] = True  # e.g. staging on its own approvals override
    return render(request, "changes/change_detail.html", context)


def _environment_context(user, change) -> dict:
    """Per-environment status, other open changes, rollback and rebase (docs/ENVIRONMENTS.md)."""
    status = env_selectors.change_status(change)
    done = change.state in (states.DEPLOYED, states.CLOSED)
    return {
        "env_status": status,
        "fully_deployed": done,
        "any_deployable": any(row["deployable"] for row in status),
        "open_changes": env_selectors.open_changes(change, user, limit=10),
        "can_rollback": done and permissions.can_create_change(user, change.system),
        "can_rebase": any(row["stale"] for row in status)
        and permissions.can_edit_change(user, change),
    }


def _form_context(form, formset, *, change=None):
    voids = []
    if change is not None:
        voids = [r for r in change.reviews.all() if r.decision == "approve" and not r.voided_at]
    return {
        "form": form,
        "formset": formset,
        "change": change,
        "live_approvals": voids,
        "resets_to_draft": change is not None and change.state not in states.EDITABLE_IN_PLACE,
    }


def _default_protocols(system_id) -> dict:
    """Base = the live version (else the second newest); proposed = the newest other one.
    The usual next change goes forward from what runs today."""
    protocols = protocols_for(system_id)  # oldest first
    if len(protocols) < 2:
        return {}
    live = live_protocol_of(system_id)
    if live is not None and live.pk != protocols[-1].pk:
        return {"base_protocol": live.pk, "proposed_protocol": protocols[-1].pk}
    if live is not None:  # the newest version is live: nothing newer to propose yet
        return {"base_protocol": live.pk}
    return {"base_protocol": protocols[-2].pk, "proposed_protocol": protocols[-1].pk}


def _warn_if_backwards(request, change) -> None:
    if is_older(change.proposed_protocol, change.base_protocol):
        messages.warning(
            request,
            f"{change.reference} goes backwards: the proposed version "
            f"{change.proposed_protocol.version} is older than the base "
            f"{change.base_protocol.version} (a rollback).",
        )


@login_required
@require_http_methods(["GET", "POST"])
def change_create(request):
    if not permissions.can_create_change(request.user, None):
        deny(request, "Only engineers file protocol changes.")
    if request.method == "POST":
        form = ChangeRequestForm(request.POST)
        formset = ExpectedChangeFormSet(request.POST, prefix="expected")
        if form.is_valid() and formset.is_valid():
            data = form.cleaned_data
            try:
                change = services.change_request_create(
                    actor=request.user,
                    system=data["system"],
                    base_protocol=data["base_protocol"],
                    proposed_protocol=data["proposed_protocol"],
                    suites=data.get("suites") or [],
                    expected_changes=expected_changes_from(formset),
                    **{k: data[k] for k in _TEXT_AND_CHOICES},
                )
            except DomainError as error:
                attach_to_form(form, error)
                context = _form_context(form, formset)
                return render(
                    request, "changes/change_form.html", context, status=error.status_code
                )
            messages.success(request, f"{change.reference} filed as a draft.")
            _warn_if_backwards(request, change)
            return redirect("change-detail", pk=change.pk)
        return render(request, "changes/change_form.html", _form_context(form, formset), status=400)
    initial = {}
    system_id = parse_id(request.GET.get("system"))
    if system_id and AISystem.objects.filter(pk=system_id).exists():
        initial = {"system": system_id, **_default_protocols(system_id)}
        # A rollback filed from a monitoring incident names both versions.
        for field, param in (("base_protocol", "base"), ("proposed_protocol", "proposed")):
            protocol_id = parse_id(request.GET.get(param))
            if protocol_id and any(p.pk == protocol_id for p in protocols_for(system_id)):
                initial[field] = protocol_id
    form = ChangeRequestForm(initial=initial)
    formset = ExpectedChangeFormSet(prefix="expected")
    return render(request, "changes/change_form.html", _form_context(form, formset))


def _edited_fields(change, data: dict, formset) -> dict:
    """Only the fields the form changed, as a PATCH through the API sends them: the service
    records exactly these names in ``change.edited``, so an untouched field is not logged."""
    edited = {}
    for name in _TEXT_AND_CHOICES:
        if data[name] != getattr(change, name):
            edited[name] = data[name]
    for name in ("base_protocol", "proposed_protocol"):
        if data[name].pk != getattr(change, f"{name}_id"):
            edited[name] = data[name]
    expected = expected_changes_from(formset)
    if expected != list(change.expected_changes or []):
        edited["expected_changes"] = expected
    suites = data.get("suites") or []
    if set(suites) != {s["id"] for s in hooks.evaluation().suite_refs(change)}:
        edited["suites"] = suites
    return edited


@login_required
@require_http_methods(["GET", "POST"])
def change_edit(request, pk):
    change = change_or_404(request.user, pk)
    if change.state not in states.EDITABLE:
        messages.error(request, f"A change in state '{change.state_label}' cannot be edited.")
        return redirect("change-detail", pk=change.pk)
    if not permissions.can_edit_change(request.user, change):
        deny(request, "Only the author or an engineer on the owning team may edit this change.")
    if request.method == "POST":
        form = ChangeRequestForm(request.POST, change=change, initial={"system": change.system_id})
        formset = ExpectedChangeFormSet(request.POST, prefix="expected")
        if form.is_valid() and formset.is_valid():
            revision = change.revision
            try:
                updated = services.change_request_update(
                    actor=request.user,
                    change_request=change,
                    data=_edited_fields(change, form.cleaned_data, formset),
                )
            except DomainError as error:
                attach_to_form(form, error)
                context = _form_context(form, formset, change=change)
                return render(
                    request, "changes/change_form.html", context, status=error.status_code
                )
            if updated.revision == revision:
                messages.info(request, "Nothing that a reviewer signs has changed.")
            else:
                messages.success(
                    request,
                    f"{updated.reference} saved as revision {updated.revision}; "
                    "earlier approvals no longer apply.",
                )
                _warn_if_backwards(request, updated)
            return redirect("change-detail", pk=change.pk)
        context = _form_context(form, formset, change=change)
        return render(request, "changes/change_form.html", context, status=400)
    suite_ids = [s["id"] for s in hooks.evaluation().suite_refs(change)]
    initial = ChangeRequestForm.initial_for(change, suite_ids)
    form = ChangeRequestForm(change=change, initial=initial)
    formset = ExpectedChangeFormSet(prefix="expected", initial=list(change.expected_changes or []))
    return render(request, "changes/change_form.html", _form_context(form, formset, change=change))


@login_required
@require_GET
def protocol_options(request):
    """htmx: the base/proposed selects for the chosen system, or with ``part=direction``
    only the note saying whether the chosen versions go backwards."""
    system_id = parse_id(request.GET.get("system"))
    initial = {"system": system_id, **_default_protocols(system_id)} if system_id else {}
    chosen = {
        name: parse_id(request.GET.get(name)) for name in ("base_protocol", "proposed_protocol")
    }
    if system_id and all(chosen.values()):  # the author picked a version: keep both picks
        initial.update(chosen)
    form = ChangeRequestForm(initial=initial)
    if request.GET.get("part") == "direction":  # a version changed: only the note moves
        return render(request, "changes/_direction_note.html", {"form": form})
    return render(request, "changes/_protocol_fields.html", {"form": form})


@login_required
@require_POST
def markdown_preview(request):
    """htmx: the sanitised HTML of one Markdown field, as the author types."""
    field = request.POST.get("field", "")
    if field not in PREVIEW_FIELDS:
        field = "rationale"
    text = request.POST.get(field, "")[:PREVIEW_MAX_CHARS]
    return render(request, "changes/_markdown_preview.html", {"html": render_markdown(text)})
