"""The audit log over the API: the paginated list, the JSON-lines and CSV exports, and the
chain verification (auditors and admins). Kept apart from ``changes.apis`` because it is a
read model of its own: streamed, renderer-selected, with no workflow object behind it.
"""

from __future__ import annotations

import csv
import json

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.api import Pagination, RoleGate, errors, parse

from . import audit, checkpoints, permissions, selectors
from . import serializers as s
from .models import AuditEvent


class AuditReaders(RoleGate):
    message = "Only auditors and admins read the audit log."
    gate_reads = True

    def allows(self, user):
        return permissions.can_read_audit(user)


class JSONLinesRenderer(BaseRenderer):
    """Selected by ``?format=jsonl`` (or ``Accept: application/x-ndjson``); the view streams."""

    media_type = "application/x-ndjson"
    format = "jsonl"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return (json.dumps(data, ensure_ascii=False) + "\n").encode()


class CSVRenderer(BaseRenderer):
    """Selected by ``?format=csv`` (or ``Accept: text/csv``); the view streams."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, ensure_ascii=False).encode()


AUDIT_FIELDS = tuple(s.AuditEventSerializer.Meta.fields)  # an export row is an API event


def audit_records(queryset):
    """Every event of ``queryset`` as a dict, streamed from the database in chunks."""
    for row in queryset.values_list(*audit.VERIFY_COLUMNS).iterator(chunk_size=2000):
        record = dict(zip(audit.VERIFY_COLUMNS, row, strict=True))
        if isinstance(record["data"], str):
            record["data"] = json.loads(record["data"])
        record["created_at"] = s.audit_time(record["created_at"])
        yield {name: record[name] for name in AUDIT_FIELDS}


def jsonl_lines(queryset):
    for record in audit_records(queryset):
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class _Echo:
    def write(self, value):
        return value


def _csv_cell(value):
    # Spreadsheets execute cells starting with these; auditors open exports in them.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(AUDIT_FIELDS)
    for record in audit_records(queryset):
        record["data"] = json.dumps(record["data"], ensure_ascii=False, sort_keys=True)
        yield writer.writerow([_csv_cell(record[name]) for name in AUDIT_FIELDS])


class AuditEventsApi(GenericAPIView):
    """The append-only audit log (auditors and admins).

    ``?format=jsonl`` streams every matching event as JSON lines and ``?format=csv`` as CSV;
    otherwise a paginated JSON list. Each event carries ``prev_hash`` and ``hash`` so an
    export can be re-verified offline.
    """

    queryset = AuditEvent.objects.none()  # schema introspection only
    serializer_class = s.AuditEventSerializer
    permission_classes = [IsAuthenticated, AuditReaders]
    pagination_class = Pagination
    filter_backends = []
    # DRF reads ``?format=`` (URL_FORMAT_OVERRIDE) to pick a renderer, so the export formats
    # are renderers; the view streams them itself.
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, JSONLinesRenderer, CSVRenderer]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # Errors are JSON whatever export format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    @extend_schema(
        tags=["audit"],
        parameters=[
            s.AuditQuerySerializer,
            OpenApiParameter(
                "format",
                str,
                enum=["json", "jsonl", "csv"],
                description="`jsonl` or `csv` streams every matching event (no pagination).",
            ),
        ],
        responses={
            (200, "application/json"): s.AuditEventSerializer(many=True),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One AuditEvent JSON object per line."
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one event per row."
            ),
            **errors(400, 401, 403, 404, media_type="application/json"),
        },
    )
    def get(self, request):
        query = parse(s.AuditQuerySerializer, request.query_params, request)
        events = selectors.audit_events(**query)
        export = request.accepted_renderer.format
        if export in ("jsonl", "csv"):
            lines = jsonl_lines(events) if export == "jsonl" else csv_lines(events)
            response = StreamingHttpResponse(
                lines, content_type=f"{request.accepted_renderer.media_type}; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="audit-events.{export}"'
            return response
        page = self.paginate_queryset(events)
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)


class AuditVerifyApi(APIView):
    """Walk the hash chain and name the first broken event (auditors and admins)."""

    permission_classes = [IsAuthenticated, AuditReaders]

    @extend_schema(tags=["audit"], responses={200: s.AuditVerifySerializer, **errors(401, 403)})
    def get(self, request):
        # The chain on its own, then against the newest signed checkpoint (docs/AUDIT.md).
        report = checkpoints.verify_anchored()
        result = {
            "valid": report.ok,
            "events": report.events,
            "first_bad_event": report.first_bad_event,
            "reason": None if report.ok else report.reason,
            "head_id": report.head_id,
            "head_hash": report.head_hash or None,
            "checkpoint": report.checkpoint.name if report.checkpoint else None,
        }
        return Response(s.AuditVerifySerializer(result).data)
