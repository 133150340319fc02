"""REST API for attestations (mounted under ``/api/v1/``), documented in the OpenAPI schema.

Everything here is read-only except verification, which only writes an audit event. Reads are
scoped to the changes the user may see (auditors and admins: all); the cross-change list and
verification are for auditors and admins. Downloads are served from the stored bytes.
"""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers as rf
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from changes import selectors as change_selectors
from core.api import Pagination, errors, or_404, parse
from core.errors import Conflict

from . import evidence, permissions, selectors, services
from . import serializers as s
from .models import Attestation
from .standing import standings

TAGS = ["attestations"]


class AuditorsOnly(BasePermission):
    message = "Only auditors and admins list and verify attestations."

    def has_permission(self, request, view):
        return permissions.can_list_all(request.user)


class PDFRenderer(BaseRenderer):
    """Lets clients ask for ``Accept: application/pdf``; the views return the bytes."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else JSONRenderer().render(data)


class _Download(GenericAPIView):
    """Shared by the byte downloads: errors are always JSON, whatever was accepted."""

    queryset = Attestation.objects.none()  # schema introspection only
    filter_backends = []
    pagination_class = None
    renderer_classes = [JSONRenderer, PDFRenderer]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


def file_response(attestation: Attestation, kind: str) -> HttpResponse:
    body = selectors.download_bytes(attestation, kind)
    if kind == "pdf":
        content_type, suffix, digest = "application/pdf", "pdf", attestation.pdf_sha256
    else:
        content_type, suffix, digest = "application/json", "dsse.json", attestation.envelope_sha256
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{attestation.file_stem}.{suffix}"'
    response["ETag"] = f'"{digest}"'
    response["X-Content-SHA256"] = digest
    response["Cache-Control"] = "private, max-age=0, must-revalidate"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _attestation(request, pk) -> Attestation:
    try:
        return selectors.attestation_for(request.user, pk)
    except Attestation.DoesNotExist:
        raise NotFound("No such attestation.")


# Seconds a client should wait before asking again: a PDF renders in a second or two once a
# worker has it; a failed render is retried by the reaper, which runs every minute.
RETRY_AFTER_RENDERING = 2
RETRY_AFTER_RETRYING = 30


def pending_response(request, attestation: Attestation) -> Response:
    """``202 Accepted`` for an attestation on its way: what it waits for and when to ask again.

    The body is JSON whatever the client accepted (a PDF client gets no PDF-typed JSON).
    """
    if attestation.status == Attestation.FAILED:
        status_word, retry_after = "retrying", RETRY_AFTER_RETRYING
        detail = "its render failed and is retried automatically"
    else:
        status_word, retry_after = attestation.status, RETRY_AFTER_RENDERING
        detail = {
            Attestation.PENDING: "it is waiting for a worker",
            Attestation.RENDERING: "it is rendering",
        }[status_word]
    request.accepted_renderer = JSONRenderer()
    request.accepted_media_type = JSONRenderer.media_type
    body = {
        "detail": f"Attestation v{attestation.version} of CR-{attestation.change_id} is on its "
        f"way ({detail}); ask again in {retry_after} seconds.",
        "code": "attestation_pending",
        "status": status_word,
        "attestation": attestation.pk,
        "version": attestation.version,
        "reason": attestation.reason,
        "retry_after": retry_after,
    }
    return Response(body, status=202, headers={"Retry-After": str(retry_after)})


def _failed(attestation: Attestation) -> Conflict:
    return Conflict(
        f"Attestation v{attestation.version} of CR-{attestation.change_id} could not be "
        "rendered and will not be retried automatically; an admin can retry it from the "
        "admin site.",
        code="attestation_failed",
    )


def _ready_or_pending(request, attestation: Attestation) -> Response | None:
    """None for a ready row; a 202 for one on its way; 409 for a render that gave up."""
    if attestation.status == Attestation.READY:
        return None
    if selectors.is_on_its_way(attestation):
        return pending_response(request, attestation)
    raise _failed(attestation)


PENDING_BODY = inline_serializer(
    "AttestationPending",
    {
        "detail": rf.CharField(),
        "code": rf.CharField(help_text="`attestation_pending`"),
        "status": rf.CharField(
            help_text="`pending` (waiting for a worker), `rendering`, or `retrying` (failed, "
            "retried automatically)."
        ),
        "attestation": rf.IntegerField(help_text="Its id (`/api/v1/attestations/{id}/`)."),
        "version": rf.IntegerField(),
        "reason": rf.ChoiceField(Attestation.REASON_CHOICES),
        "retry_after": rf.IntegerField(help_text="Seconds; also the `Retry-After` header."),
    },
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    int,
    location=OpenApiParameter.HEADER,
    description="Seconds to wait before asking again.",
    response=[202],
)
PDF_RESPONSE = {
    (200, "application/pdf"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The PDF, with the signed envelope embedded."
    ),
    (202, "application/json"): OpenApiResponse(
        PENDING_BODY,
        description="The attestation is on its way (pending, rendering, or failed and "
        "retried automatically): ask again after `Retry-After` seconds.",
    ),
    **errors(401, 404, 409, media_type="application/json"),
}


class ChangeAttestationPdfApi(_Download):
    @extend_schema(
        tags=TAGS,
        operation_id="change_attestation_pdf",
        summary="The newest ready attestation PDF of a change",
        description="The newest attestation that is ready; `X-Attestation-Version` names "
        "it, and `X-Attestation-Newer-Version` a newer one still on its way (the deployment "
        "attestation right after a deploy, say). While none is ready yet but one is on its "
        "way: 202 with `Retry-After` and a JSON body (`code` `attestation_pending`), never a "
        "404. 404 with `code` `no_attestation` only when none was ever issued (one is issued "
        "on the last required approval and on deployment); 409 `attestation_failed` when "
        "the only one failed for good.",
        parameters=[
            RETRY_AFTER_HEADER,
            OpenApiParameter(
                "X-Attestation-Version",
                int,
                location=OpenApiParameter.HEADER,
                description="The version served.",
                response=[200],
            ),
            OpenApiParameter(
                "X-Attestation-Newer-Version",
                int,
                location=OpenApiParameter.HEADER,
                description="A newer version still on its way, when there is one.",
                response=[200],
            ),
        ],
        responses=PDF_RESPONSE,
    )
    def get(self, request, pk):
        change = or_404(change_selectors.change_for, request.user, pk, detail="No such change.")
        ready = selectors.newest_ready(change)
        coming = selectors.newest_on_its_way(change)
        if ready is not None:
            response = file_response(ready, "pdf")
            response["X-Attestation-Version"] = str(ready.version)
            if coming is not None and coming.version > ready.version:
                response["X-Attestation-Newer-Version"] = str(coming.version)
            return response
        if coming is not None:
            return pending_response(request, coming)
        newest = selectors.change_attestations(change).first()
        if newest is not None:
            raise _failed(newest)
        raise NotFound(
            f"No attestation has been issued for {change.reference} yet: one is issued "
            "on its last required approval and on deployment.",
            code="no_attestation",
        )


class ChangeAttestationListApi(GenericAPIView):
    queryset = Attestation.objects.none()
    serializer_class = s.AttestationSerializer
    pagination_class = Pagination
    filter_backends = []

    @extend_schema(
        tags=TAGS,
        operation_id="change_attestations_list",
        summary="Every attestation version of a change, newest first",
        responses={200: s.AttestationSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk):
        change = or_404(change_selectors.change_for, request.user, pk, detail="No such change.")
        page = self.paginate_queryset(selectors.change_attestations(change))
        context = {"request": request, "standings": standings(page)}
        data = s.AttestationSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)


class AttestationListApi(GenericAPIView):
    """Every attestation (auditors and admins), filterable by system, change, reason, status
    and issue date."""

    queryset = Attestation.objects.none()
    serializer_class = s.AttestationSerializer
    permission_classes = [IsAuthenticated, AuditorsOnly]
    pagination_class = Pagination
    filter_backends = []

    @extend_schema(
        tags=TAGS,
        operation_id="attestations_list",
        summary="All attestations (auditors and admins)",
        parameters=[s.AttestationQuerySerializer],
        responses={200: s.AttestationSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request):
        query = parse(s.AttestationQuerySerializer, request.query_params, request)
        qs = selectors.filter_attestations(selectors.visible_attestations(request.user), **query)
        page = self.paginate_queryset(qs)
        context = {"request": request, "standings": standings(page)}
        data = s.AttestationSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)


class AttestationDetailApi(GenericAPIView):
    queryset = Attestation.objects.none()
    serializer_class = s.AttestationDetailSerializer
    filter_backends = []

    @extend_schema(
        tags=TAGS,
        operation_id="attestation_retrieve",
        summary="One attestation, with its signed statement",
        responses={200: s.AttestationDetailSerializer, **errors(401, 404)},
    )
    def get(self, request, pk):
        attestation = _attestation(request, pk)
        row = Attestation.objects.select_related("change__system").defer("pdf", "envelope")
        data = s.AttestationDetailSerializer(
            row.get(pk=attestation.pk), context={"request": request}
        ).data
        return Response(data)


class AttestationPdfApi(_Download):
    @extend_schema(
        tags=TAGS,
        operation_id="attestation_pdf",
        summary="Download one attestation's PDF",
        description="202 with `Retry-After` while it is on its way; 409 "
        "`attestation_failed` when its render gave up.",
        parameters=[RETRY_AFTER_HEADER],
        responses=PDF_RESPONSE,
    )
    def get(self, request, pk):
        attestation = _attestation(request, pk)
        return _ready_or_pending(request, attestation) or file_response(attestation, "pdf")


class AttestationEnvelopeApi(_Download):
    @extend_schema(
        tags=TAGS,
        operation_id="attestation_envelope",
        summary="Download one attestation's signed DSSE envelope (JSON)",
        description="Exactly the bytes embedded in the PDF as `attestation.dsse.json`. 202 "
        "with `Retry-After` while it is on its way; 409 `attestation_failed` when its render "
        "gave up.",
        parameters=[RETRY_AFTER_HEADER],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A DSSE envelope: payloadType, payload (base64), signatures.",
            ),
            (202, "application/json"): PDF_RESPONSE[(202, "application/json")],
            **errors(401, 404, 409, media_type="application/json"),
        },
    )
    def get(self, request, pk):
        attestation = _attestation(request, pk)
        return _ready_or_pending(request, attestation) or file_response(attestation, "envelope")


class AttestationVerifyApi(GenericAPIView):
    """Verify an attestation PDF: signature, statement and records, each check named."""

    queryset = Attestation.objects.none()
    serializer_class = s.VerifyUploadSerializer
    permission_classes = [IsAuthenticated, AuditorsOnly]
    parser_classes = [MultiPartParser, FormParser]
    filter_backends = []

    @extend_schema(
        tags=TAGS,
        operation_id="attestation_verify",
        summary="Verify an attestation PDF (auditors and admins)",
        description="Answers 200 with `valid` (the file is intact, signed by this deployment "
        "and issued by it) and `standing` (`current` or `superseded`, with by which "
        "attestation, when and why). Any bad file (not a PDF, empty, damaged, encrypted, "
        "larger than 20 MB, changed in any byte) is `valid: false` with each failed check in "
        "words; 400 only when no file is sent. Every attempt is written to the audit log.",
        request={"multipart/form-data": s.VerifyUploadSerializer},
        responses={200: s.VerifyResultSerializer, **errors(400, 401, 403)},
    )
    def post(self, request):
        declared = request.META.get("CONTENT_LENGTH")
        if services.upload_declared_too_large(declared):
            # Refused from the header alone, before the body is read; still an answer.
            result = services.refuse_upload(actor=request.user, size=int(declared), source="api")
            return Response(s.VerifyResultSerializer(result).data)
        upload = parse(s.VerifyUploadSerializer, request.data, request)["file"]
        if upload.size > services.MAX_UPLOAD_BYTES:
            result = services.refuse_upload(
                actor=request.user, size=upload.size, filename=upload.name or "", source="api"
            )
            return Response(s.VerifyResultSerializer(result).data)
        result = services.verify_upload(
            actor=request.user, pdf_bytes=upload.read(), filename=upload.name or "", source="api"
        )
        return Response(s.VerifyResultSerializer(result).data)


class ZipRenderer(BaseRenderer):
    """Lets clients ask for ``Accept: application/zip``; the view streams the bytes."""

    media_type = "application/zip"
    format = "zip"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else JSONRenderer().render(data)


class ChangeEvidenceApi(_Download):
    renderer_classes = [JSONRenderer, ZipRenderer]

    @extend_schema(
        tags=TAGS,
        operation_id="change_evidence_zip",
        summary="The evidence package of a change (ZIP, for offline audit)",
        description="Every attestation PDF of the change (current and superseded) with its "
        "DSSE envelope, the change's audit events as JSON lines with RFC 9162 inclusion "
        "proofs, the newest signed audit checkpoint (C2SP signed note), the public keys, "
        "VERIFY.md and `verify_evidence.py`, which checks it all offline. Streamed; "
        "409 `audit_chain_broken` when the audit log contradicts its newest checkpoint, "
        "409 `evidence_too_large` over `EVIDENCE_MAX_BYTES`. Readable by whoever may read "
        "the change.",
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The evidence package."
            ),
            **errors(401, 404, 409, media_type="application/json"),
        },
    )
    def get(self, request, pk):
        change = or_404(change_selectors.change_for, request.user, pk, detail="No such change.")
        plan = evidence.plan_evidence(change)
        response = StreamingHttpResponse(
            evidence.stream_evidence(plan), content_type="application/zip"
        )
        response["Content-Disposition"] = f'attachment; filename="{plan.filename}"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class AttestationCertificateApi(GenericAPIView):
    """The public certificate and key fingerprint attestations are signed with (no login)."""

    queryset = Attestation.objects.none()
    serializer_class = s.CertificateSerializer
    permission_classes = [AllowAny]
    authentication_classes = []
    filter_backends = []

    @extend_schema(
        tags=TAGS,
        operation_id="attestation_certificate",
        summary="This deployment's attestation signing certificate and key fingerprint",
        description="Public. The same PEM is served at `/attestations/certificate.pem`.",
        responses={200: s.CertificateSerializer},
    )
    def get(self, request):
        from .certs import published
        from .keys import SigningKeyError, load_signer

        try:
            data = published(load_signer())
        except SigningKeyError:
            raise NotFound(
                "No attestation signing key is configured here.", code="no_signing_key"
            ) from None
        return Response(s.CertificateSerializer(data).data)
