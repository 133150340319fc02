"""Environment actions on the change page: rollback (one POST) and rebase (a merge editor)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from core.errors import DomainError, as_domain_error
from core.ui import report

from .. import env_services
from ._common import change_or_404


@login_required
@require_POST
def change_rollback(request, pk):
    change = change_or_404(request.user, pk)
    try:
        rollback = env_services.change_request_rollback(
            actor=request.user, change_request=change, emergency=bool(request.POST.get("emergency"))
        )
    except DomainError as exc:
        report(request, as_domain_error(exc))
        return redirect("change-detail", pk=change.pk)
    messages.success(request, f"{rollback.reference} filed: it rolls back {change.reference}.")
    return redirect("change-detail", pk=rollback.pk)


@login_required
@require_http_methods(["GET", "POST"])
def change_rebase(request, pk):
    """Shows the three-way merge (conflicts between markers) in editable boxes; POST rebases
    with the edited text. The service refuses text that still holds markers."""
    change = change_or_404(request.user, pk)
    try:
        preview = env_services.rebase_preview(change)
    except DomainError as exc:
        report(request, as_domain_error(exc))
        return redirect("change-detail", pk=change.pk)
    status, error = 200, None
    if request.method == "POST":
        prompt = request.POST.get("system_prompt", "").replace("\r\n", "\n")
        body = request.POST.get("body", "").replace("\r\n", "\n")
        try:
            env_services.change_request_rebase(
                actor=request.user, change_request=change, system_prompt=prompt, body=body
            )
        except DomainError as exc:
            error, status = exc.detail, 409 if exc.status_code == 409 else exc.status_code
            preview["system_prompt"], preview["body"] = prompt, body
        else:
            messages.success(
                request,
                f"{change.reference} rebased onto {preview['onto'].version}; approvals and "
                "evaluations are redone.",
            )
            return redirect("change-detail", pk=change.pk)
    context = {"change": change, "preview": preview, "error": error}
    return render(request, "changes/rebase.html", context, status=status)
