"""REST API for attestations (mounted under ``/api/v1/``), documented in the OpenAPI schema.

Everything here is read-only except verification, which only writes an audit event. Reads are
scoped to the changes the user may see (auditors and admins: all); the cross-change list and
verification are for auditors and admins. Downloads are served from the stored bytes.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from changes.apis import Pagination, errors, parse, visible_change

from . import selectors, services
from . import serializers as s
from .models import Attestation
from .standing import standings

TAGS = ["attestations"]


class AuditorsOnly(BasePermission):
    message = "Only auditors and admins list and verify attestations."

    def has_permission(self, request, view):
        return selectors.can_list_all(request.user)


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


def _ready(attestation: Attestation) -> Attestation:
    if attestation.status != Attestation.READY:
        raise NotFound(
            f"Attestation v{attestation.version} of CR-{attestation.change_id} is "
            f"{attestation.status}; there is nothing to download yet.",
            code=f"attestation_{attestation.status}",
        )
    return attestation


PDF_RESPONSE = {
    (200, "application/pdf"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The PDF, with the signed envelope embedded."
    ),
    **errors(401, 404, media_type="application/json"),
}


class ChangeAttestationPdfApi(_Download):
    @extend_schema(
        tags=TAGS,
        operation_id="change_attestation_pdf",
        summary="The newest attestation PDF of a change",
        description="404 with `code` `attestation_pending` while the first one renders, "
        "or `no_attestation` when none was issued yet.",
        responses=PDF_RESPONSE,
    )
    def get(self, request, pk):
        change = visible_change(request, pk)
        attestation = selectors.newest_ready(change)
        if attestation is None:
            in_flight = selectors.change_attestations(change).filter(
                status__in=Attestation.IN_FLIGHT
            )
            if in_flight.exists():
                raise NotFound(
                    f"The attestation of {change.reference} is still rendering; try again "
                    "in a few seconds.",
                    code="attestation_pending",
                )
            raise NotFound(
                f"No attestation has been issued for {change.reference} yet: one is issued "
                "on its last required approval and on deployment.",
                code="no_attestation",
            )
        return file_response(attestation, "pdf")


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
        change = visible_change(request, pk)
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
        responses=PDF_RESPONSE,
    )
    def get(self, request, pk):
        return file_response(_ready(_attestation(request, pk)), "pdf")


class AttestationEnvelopeApi(_Download):
    @extend_schema(
        tags=TAGS,
        operation_id="attestation_envelope",
        summary="Download one attestation's signed DSSE envelope (JSON)",
        description="Exactly the bytes embedded in the PDF as `attestation.dsse.json`.",
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A DSSE envelope: payloadType, payload (base64), signatures.",
            ),
            **errors(401, 404, media_type="application/json"),
        },
    )
    def get(self, request, pk):
        return file_response(_ready(_attestation(request, pk)), "envelope")


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
