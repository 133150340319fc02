"""REST endpoints of the monitoring app (thin: parse, one service, render)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied, Throttled
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from changes import selectors as change_selectors
from changes.models import AISystem, ChangeRequest
from core.api import errors, or_404

from . import ingest, services
from . import serializers as s
from .authentication import IngestPrincipal, IngestTokenAuthentication


def visible_change(request, pk) -> ChangeRequest:
    return or_404(change_selectors.change_for, request.user, pk, detail="No such change.")


JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")


class DecisionIngestApi(APIView):
    """Post live decisions of one system: a JSON array or JSONL (one decision per line).

    Authenticate with the system's ingestion token (`Authorization: Bearer pcm_ing_...`);
    a token of another system gets 403. The body is streamed (never held in memory) and
    must carry a `Content-Length` no larger than the cap (else 413, unread). Each bad line is
    reported with its number and reason; the others are stored. Replays are idempotent
    (`idempotency_key` is unique per system). A decision served under a protocol hash other
    than the one live in its environment is stored, flagged, and opens an
    "unapproved protocol" incident.
    """

    authentication_classes = [IngestTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["monitoring"],
        request={
            "application/json": s.DecisionInSerializer(many=True),
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses={
            200: s.IngestReportSerializer,
            **errors(401, 403),
            411: OpenApiResponse(description="No Content-Length."),
            413: OpenApiResponse(description="Body larger than the cap (not read)."),
            415: OpenApiResponse(description="Not JSON or JSONL."),
            429: OpenApiResponse(description="The token's per-minute budget is spent."),
        },
        examples=[
            OpenApiExample(
                "JSONL line",
                value={
                    "idempotency_key": "req-0001",
                    "timestamp": "2026-01-01T12:00:00Z",
                    "environment": "production",
                    "protocol_sha256": "0" * 64,
                    "output": "NEEDS_SECOND_APPROVER",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request, pk: int):
        principal = request.user
        if not isinstance(principal, IngestPrincipal):
            raise NotAuthenticated("Send the system's ingestion token as a Bearer token.")
        token = principal.token
        if token.system_id != int(pk):
            raise PermissionDenied("This ingestion token belongs to another system.")
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length.isdigit():
            return _plain(411, "Content-Length is required (the body is streamed).", "length")
        if int(length) > settings.MONITORING_MAX_BODY_BYTES:
            return _plain(
                413,
                f"Body of {length} bytes is over the {settings.MONITORING_MAX_BODY_BYTES} "
                "byte cap: split it into several requests.",
                "too_large",
            )
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type in JSONL_TYPES:
            records = ingest.jsonl_records(request._request)
        elif content_type == "application/json":
            records = ingest.json_array_records(request._request)
        else:
            return _plain(
                415,
                "Send application/json (an array) or application/x-ndjson.",
                "unsupported_media_type",
            )
        if not services.token_take(token):
            raise Throttled(wait=60, detail="This token's per-minute request budget is spent.")
        report = services.decisions_ingest(token=token, records=records)
        return Response(s.IngestReportSerializer(report.as_dict()).data)


def _plain(code: int, detail: str, slug: str) -> Response:
    return Response({"detail": detail, "code": slug}, status=code)


class IngestTokenApi(APIView):
    """Create an ingestion token for one system (admins and the owning team). The secret is
    in this response only."""

    @extend_schema(
        tags=["monitoring"],
        request=s.IngestTokenCreateSerializer,
        responses={201: s.IngestTokenSerializer, **errors(400, 401, 403, 404)},
    )
    def post(self, request, pk: int):
        system = get_object_or_404(AISystem, pk=pk)
        data = s.IngestTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = services.ingest_token_create(
            actor=request.user, system=system, **data.validated_data
        )
        token.secret = secret
        return Response(s.IngestTokenSerializer(token).data, status=status.HTTP_201_CREATED)


class OtlpTracesApi(APIView):
    """OTLP/HTTP trace export (JSON or protobuf encoding) mapped to decisions per the OpenTelemetry
    GenAI semantic conventions (docs/MONITORING.md). Same token, scope, caps, validation,
    idempotency and unapproved-protocol check as the decisions endpoint."""

    authentication_classes = [IngestTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["monitoring"],
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/x-protobuf": OpenApiTypes.BINARY,
        },
        responses={
            200: s.OtlpReportSerializer,
            400: OpenApiResponse(description="The body is not JSON / not a decodable protobuf."),
            **errors(401, 403),
            413: OpenApiResponse(description="Body larger than the OTLP cap (not read)."),
            415: OpenApiResponse(description="Neither application/json nor x-protobuf."),
            429: OpenApiResponse(description="The token's per-minute budget is spent."),
        },
    )
    def post(self, request, pk: int):
        import orjson

        from . import otlp

        principal = request.user
        if not isinstance(principal, IngestPrincipal):
            raise NotAuthenticated("Send the system's ingestion token as a Bearer token.")
        token = principal.token
        if token.system_id != int(pk):
            raise PermissionDenied("This ingestion token belongs to another system.")
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/x-protobuf"):
            return _plain(
                415,
                "Export OTLP as application/json or application/x-protobuf.",
                "unsupported_media_type",
            )
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length.isdigit():
            return _plain(411, "Content-Length is required.", "length")
        if int(length) > settings.MONITORING_OTLP_MAX_BYTES:
            return _plain(413, "OTLP body over the cap: export smaller batches.", "too_large")
        if not services.token_take(token):
            raise Throttled(wait=60, detail="This token's per-minute request budget is spent.")
        body = request._request.read(int(length))
        if content_type == "application/x-protobuf":
            try:
                document = otlp.protobuf_document(body)
            except otlp.ProtobufError as error:
                return _plain(400, str(error), "invalid")
        else:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                return _plain(400, "The body is not JSON.", "invalid")
        records, counts = otlp.records(document)
        report = services.decisions_ingest(token=token, records=records).as_dict()
        body = {**report, **counts}
        if report["rejected"]:
            body["partialSuccess"] = {
                "rejectedSpans": report["rejected"],
                "errorMessage": "; ".join(
                    f"span {e['line']}: {e['reason']}" for e in report["errors"][:5]
                ),
            }
        return Response(body)


class MonitorApi(APIView):
    """How the change's protocol is recognised in live outputs (suite grader kinds)."""

    @extend_schema(tags=["monitoring"], responses={200: s.MonitorSerializer, **errors(401, 404)})
    def get(self, request, pk: int):
        from .models import Monitor

        change = visible_change(request, pk)
        monitor = Monitor.objects.filter(change=change).first()
        if monitor is None:
            raise NotFound("This change has no monitor.")
        return Response(s.MonitorSerializer(monitor).data)

    @extend_schema(
        tags=["monitoring"],
        request=s.MonitorInSerializer,
        responses={200: s.MonitorSerializer, **errors(400, 401, 403, 404)},
    )
    def put(self, request, pk: int):
        change = visible_change(request, pk)
        data = s.MonitorInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        monitor = services.monitor_set(actor=request.user, change=change, **data.validated_data)
        return Response(s.MonitorSerializer(monitor).data)


class MonitoringStatusApi(APIView):
    """What is live where, the eval-vs-live assessment per monitored change and environment,
    the review estimates and the open incidents of one system."""

    @extend_schema(
        tags=["monitoring"], responses={200: s.MonitoringStatusSerializer, **errors(401, 404)}
    )
    def get(self, request, pk: int):
        from . import discrepancy, review, selectors
        from .live import live_map

        system = get_object_or_404(AISystem, pk=pk)
        lives = live_map(system)
        assessments = []
        for change_id in sorted({lv.change.pk for lv in lives.values() if lv.change}):
            change = next(
                lv.change for lv in lives.values() if lv.change and lv.change.pk == change_id
            )
            assessments += [{"change": change_id, **row} for row in discrepancy.assess(change)]
        body = {
            "live": {
                env: {
                    "protocol_sha256": lv.protocol_sha256,
                    "change": lv.change.pk if lv.change else None,
                }
                for env, lv in lives.items()
            },
            "assessments": assessments,
            "review": review.estimates(system.pk),
            "incidents": list(selectors.open_incidents(system)),
        }
        return Response(s.MonitoringStatusSerializer(body).data)


class IngestTokenRevokeApi(APIView):
    """Revoke one ingestion token of the system (admins and the owning team)."""

    @extend_schema(
        tags=["monitoring"], request=None, responses={204: None, **errors(401, 403, 404)}
    )
    def delete(self, request, pk: int, token_pk: int):
        from .models import IngestToken

        token = get_object_or_404(IngestToken, pk=token_pk, system_id=pk)
        services.ingest_token_revoke(actor=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
