"""Web pages for attestations: the auditors' list, the verify page, and the change-page panel
(which polls with htmx while a version is rendering)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from changes import selectors as change_selectors
from changes.models import AISystem
from core.ui import deny, or_404, paginate

from . import permissions, selectors, services
from .models import Attestation
from .standing import standings

PANEL_TEMPLATE = "attestations/_change_panel.html"
POLL_SECONDS = 3


class AttestationFilterForm(forms.Form):
    system = forms.ModelChoiceField(
        queryset=AISystem.objects.order_by("name"), required=False, empty_label="Any system"
    )
    reason = forms.ChoiceField(
        choices=[("", "Any reason"), *Attestation.REASON_CHOICES], required=False
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Attestation.STATUS_CHOICES], required=False
    )
    since = forms.DateField(
        required=False, label="Issued from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="Issued until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "Must not be before 'Issued from'.")
        return data


class VerifyForm(forms.Form):
    file = forms.FileField(
        label="Attestation PDF",
        help_text="At most 20 MB. Nothing is stored; the verification is audited.",
        allow_empty_file=True,  # an empty file is an answer ("not valid"), not a form error
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,.pdf"}),
    )


def _links(attestation: Attestation) -> dict:
    ready = attestation.status == Attestation.READY
    return {
        "pdf": reverse("api-attestation-pdf", kwargs={"pk": attestation.pk}) if ready else "",
        "envelope": (
            reverse("api-attestation-envelope", kwargs={"pk": attestation.pk}) if ready else ""
        ),
    }


def _rows(attestations) -> list[dict]:
    attestations = list(attestations)
    standing = standings(attestations)
    return [{"a": a, "links": _links(a), "standing": standing.get(a.pk)} for a in attestations]


def panel_context(change, user) -> dict:
    """Context of the change-page panel: every version, newest first, with links."""
    versions = list(selectors.change_attestations(change))
    polling = any(a.status in Attestation.IN_FLIGHT for a in versions)
    return {
        "attestation_rows": _rows(versions),
        "attestation_polling": polling,
        "attestation_poll_seconds": POLL_SECONDS,
        "attestation_panel_url": reverse("attestation-panel", kwargs={"pk": change.pk}),
        "attestation_can_verify": permissions.can_list_all(user),
    }


@login_required
@require_GET
def change_panel(request, pk):
    """The panel alone, for htmx polling while a version renders."""
    change = or_404(change_selectors.change_for, request.user, pk, detail="No such change.")
    context = {"change": change, **panel_context(change, request.user)}
    return render(request, PANEL_TEMPLATE, context)


@login_required
@require_GET
def attestation_list(request):
    """All attestations, for auditors and admins: filter, page, download."""
    if not permissions.can_list_all(request.user):
        deny(request, "Only auditors and admins see every attestation.")
    form = AttestationFilterForm(request.GET or None)
    qs = selectors.visible_attestations(request.user)
    filtered = False
    if form.is_bound and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        if "system" in data:
            data["system"] = data["system"].pk
        filtered = bool(data)
        qs = selectors.filter_attestations(qs, **data)
    page = paginate(request, qs)
    return render(
        request,
        "attestations/attestation_list.html",
        {"form": form, "page": page, "rows": _rows(page.object_list), "filtered": filtered},
    )


@login_required
@require_http_methods(["GET", "POST"])
def attestation_verify(request):
    """Upload a PDF; see every check, passed or failed."""
    if not permissions.can_list_all(request.user):
        deny(request, "Only auditors and admins verify attestations.")
    result = None
    status = 200
    if request.method == "POST":
        declared = request.META.get("CONTENT_LENGTH")
        if services.upload_declared_too_large(declared):
            form = VerifyForm()
            result = services.refuse_upload(actor=request.user, size=int(declared), source="web")
        else:
            form = VerifyForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                if upload.size > services.MAX_UPLOAD_BYTES:
                    result = services.refuse_upload(
                        actor=request.user,
                        size=upload.size,
                        filename=upload.name or "",
                        source="web",
                    )
                else:
                    result = services.verify_upload(
                        actor=request.user,
                        pdf_bytes=upload.read(),
                        filename=upload.name or "",
                        source="web",
                    )
            else:
                status = 400
    else:
        form = VerifyForm()
    return render(
        request,
        "attestations/verify.html",
        {
            "form": form,
            "result": result,
            "failed": (result or {}).get("failed", []),
        },
        status=status,
    )


@require_GET
def certificate_pem(request):
    """The signing certificate and the CA certificate, PEM, public: what ``pdfsig``, pyHanko
    or ``openssl`` need to check an attestation offline. No login, so anyone can fetch it."""
    from django.http import HttpResponse

    from .certs import published
    from .keys import SigningKeyError, load_signer

    try:
        data = published(load_signer())
    except SigningKeyError:
        return HttpResponse(
            "No attestation signing key is configured here.\n",
            status=503,
            content_type="text/plain",
        )
    body = data["certificate_pem"] + data["ca_certificate_pem"]
    response = HttpResponse(body, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="attestation-certificate.pem"'
    response["X-Certificate-SHA256"] = data["certificate_sha256"]
    response["X-Key-Id"] = data["key_id"]
    response["Cache-Control"] = "public, max-age=300"
    return response
