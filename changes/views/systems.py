"""AI systems, their protocol versions, and the compare page between any two versions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from core.errors import DomainError
from core.ids import parse_id
from core.ui import attach_to_form, deny

from .. import diff, env_selectors, permissions, selectors, services
from ..forms import ProtocolVersionForm
from ..models import ProtocolVersion


def _system_or_404(user, pk):
    return get_object_or_404(selectors.visible_systems(user), pk=pk)


@login_required
@require_GET
def system_list(request):
    systems = selectors.visible_systems(request.user).annotate(
        protocol_count=Count("protocols", distinct=True)
    )
    return render(request, "changes/system_list.html", {"systems": systems})


@login_required
@require_GET
def system_detail(request, pk):
    system = _system_or_404(request.user, pk)
    protocols = list(system.protocols.select_related("created_by").order_by("-id"))
    changes = selectors.visible_changes(request.user).filter(system=system)[:10]
    return render(
        request,
        "changes/system_detail.html",
        {
            "system": system,
            "protocols": protocols,
            "changes": changes,
            "live": selectors.live_protocol(system),
            "registry": env_selectors.registry(system),
            "env_timeline": env_selectors.system_timeline(system),
        },
    )


@login_required
@require_GET
def protocol_detail(request, pk, protocol_pk):
    system = _system_or_404(request.user, pk)
    protocol = get_object_or_404(ProtocolVersion, pk=protocol_pk, system=system)
    return render(request, "changes/protocol_detail.html", {"system": system, "protocol": protocol})


def _protocol_param(system, value):
    if value in (None, ""):
        return None
    pk = parse_id(value)
    if pk is None:
        raise Http404("No such protocol version.")
    return get_object_or_404(ProtocolVersion, pk=pk, system=system)


@login_required
@require_GET
def protocol_compare(request, pk):
    """/systems/<id>/protocols/compare/?from=<protocol id>&to=<protocol id>"""
    system = _system_or_404(request.user, pk)
    protocols = list(system.protocols.order_by("-id"))
    old = _protocol_param(system, request.GET.get("from"))
    new = _protocol_param(system, request.GET.get("to"))
    if old is None and new is None and len(protocols) >= 2:
        old, new = protocols[1], protocols[0]
    parts = diff.protocol_diff(old, new) if old and new else []
    return render(
        request,
        "changes/protocol_compare.html",
        {
            "system": system,
            "protocols": protocols,
            "old": old,
            "new": new,
            "parts": parts,
            "diff_mode": "unified" if request.GET.get("diff") == "unified" else "split",
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def protocol_create(request, pk):
    """Add a protocol version from the UI: the API's service, validation and audit event
    (``protocol.created``). The form starts from the newest version's text."""
    system = _system_or_404(request.user, pk)
    if not permissions.can_create_protocol(request.user, system):
        deny(request, "Only engineers add protocol versions.")
    latest = system.protocols.order_by("-created_at", "-id").first()
    status = 200
    if request.method == "POST":
        form = ProtocolVersionForm(request.POST)
        if form.is_valid():
            try:
                protocol = services.protocol_version_create(
                    actor=request.user, system=system, **form.cleaned_data
                )
            except DomainError as error:
                attach_to_form(form, error)
                status = error.status_code
            else:
                messages.success(
                    request,
                    f"{system.name} {protocol.version} added. It is immutable; file a change "
                    "to propose it.",
                )
                return redirect("protocol-detail", pk=system.pk, protocol_pk=protocol.pk)
        else:
            status = 400
    else:
        initial = {"system_prompt": latest.system_prompt, "body": latest.body} if latest else {}
        form = ProtocolVersionForm(initial=initial)
    context = {"system": system, "form": form, "latest": latest}
    return render(request, "changes/protocol_form.html", context, status=status)
