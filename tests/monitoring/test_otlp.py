"""OTLP/HTTP JSON spans following the GenAI semantic conventions become decisions."""

from __future__ import annotations

import time

import orjson
import pytest

from monitoring.models import Decision

pytestmark = pytest.mark.django_db


def attr(key, value):
    return {"key": key, "value": {"stringValue": value}}


def export(live_hash, spans=None):
    now = str(time.time_ns())
    genai = [
        {
            "traceId": "t1", "spanId": "s1", "name": "chat gpt-x", "startTimeUnixNano": now,
            "attributes": [attr("gen_ai.operation.name", "chat"),
                           attr("gen_ai.request.model", "gpt-x"),
                           attr("pcm.protocol_sha256", live_hash)],
            "events": [
                {"name": "gen_ai.user.message", "attributes": [attr("content", "grant admin?")]},
                {"name": "gen_ai.choice", "attributes": [attr("message", "NEEDS_SECOND_APPROVER")]},
            ],
        },
        {   # GenAI span without message content: accepted and counted
            "traceId": "t1", "spanId": "s2", "startTimeUnixNano": now,
            "attributes": [attr("gen_ai.operation.name", "chat"),
                           attr("pcm.protocol_sha256", live_hash)],
        },
        {"traceId": "t1", "spanId": "s3", "startTimeUnixNano": now,  # not GenAI: skipped
         "attributes": [attr("http.method", "GET")]},
        {   # newer convention: messages as attributes
            "traceId": "t2", "spanId": "s4", "startTimeUnixNano": now,
            "attributes": [attr("gen_ai.input.messages", '[{"role":"user"}]'),
                           attr("gen_ai.output.messages", '[{"role":"assistant","parts":["ok"]}]'),
                           attr("gen_ai.response.model", "gpt-y"),
                           attr("pcm.protocol_sha256", live_hash)],
        },
        {"traceId": "t3", "spanId": "s5", "startTimeUnixNano": now,  # no protocol hash
         "attributes": [attr("gen_ai.operation.name", "chat")]},
    ]  # fmt: skip
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("deployment.environment.name", "production")]},
                "scopeSpans": [{"spans": spans if spans is not None else genai}],
            }
        ]
    }


def post(client, system_id, document, content_type="application/json"):
    return client.post(
        f"/api/v1/systems/{system_id}/otlp/v1/traces",
        data=orjson.dumps(document),
        content_type=content_type,
    )


def test_genai_spans_map_to_decisions(ingest_client, deployed, live_hash):
    body = post(ingest_client, deployed.system_id, export(live_hash)).json()
    assert (body["spans"], body["skipped"], body["without_content"]) == (5, 1, 2)
    assert body["accepted"] == 3 and body["rejected"] == 1
    assert body["partialSuccess"]["rejectedSpans"] == 1
    assert "protocol_sha256" in body["partialSuccess"]["errorMessage"]
    first = Decision.objects.get(idempotency_key="otlp-t1-s1")
    assert first.input_text == "grant admin?" and first.output_text == "NEEDS_SECOND_APPROVER"
    assert first.model_label == "gpt-x" and first.environment == "production"
    assert Decision.objects.get(idempotency_key="otlp-t1-s2").output_text == ""
    assert "assistant" in Decision.objects.get(idempotency_key="otlp-t2-s4").output_text
    again = post(ingest_client, deployed.system_id, export(live_hash)).json()
    assert again["accepted"] == 0 and again["duplicates"] == 3


def test_other_media_and_oversized_bodies_are_refused(ingest_client, deployed, live_hash, settings):
    assert post(ingest_client, deployed.system_id, {}, "application/xml").status_code == 415
    settings.MONITORING_OTLP_MAX_BYTES = 100
    assert post(ingest_client, deployed.system_id, export(live_hash)).status_code == 413


def test_malformed_otlp_is_a_report_not_a_crash(ingest_client, deployed, live_hash):
    response = ingest_client.post(
        f"/api/v1/systems/{deployed.system_id}/otlp/v1/traces",
        data=b"{nope",
        content_type="application/json",
    )
    assert response.status_code == 400
    body = post(
        ingest_client,
        deployed.system_id,
        {"resourceSpans": [None, {"scopeSpans": [{"spans": [5]}]}]},
    ).json()
    assert body["rejected"] == 1 and body["accepted"] == 0
    assert post(ingest_client, deployed.system_id, [1, 2]).json()["rejected"] == 1


# ------------------------------------------------------------------ protobuf (http/protobuf)


def _any(value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    return AnyValue(string_value=value)


def to_protobuf(document) -> bytes:
    """Encode the JSON test export with the opentelemetry-proto classes, span for span (ids
    are bytes on the wire, hex in OTLP/JSON)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kvs(items):
        return [KeyValue(key=a["key"], value=_any(a["value"]["stringValue"])) for a in items]

    request = ExportTraceServiceRequest()
    for rs in document["resourceSpans"]:
        spans = []
        for span in rs["scopeSpans"][0]["spans"]:
            spans.append(
                Span(
                    trace_id=span["traceId"].encode().ljust(16, b"\0"),
                    span_id=span["spanId"].encode().ljust(8, b"\0"),
                    name=span.get("name", ""),
                    start_time_unix_nano=int(span["startTimeUnixNano"]),
                    attributes=kvs(span.get("attributes", [])),
                    events=[
                        Span.Event(name=e["name"], attributes=kvs(e["attributes"]))
                        for e in span.get("events", [])
                    ],
                )
            )
        request.resource_spans.append(
            ResourceSpans(
                resource=Resource(attributes=kvs(rs["resource"]["attributes"])),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        )
    return request.SerializeToString()


def as_hex_ids(document):
    """The same export with the ids the protobuf carries, in OTLP/JSON's hex form."""
    copy = orjson.loads(orjson.dumps(document))
    for span in copy["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"] = span["traceId"].encode().ljust(16, b"\0").hex()
        span["spanId"] = span["spanId"].encode().ljust(8, b"\0").hex()
    return copy


FIELDS = ("environment", "protocol_sha256", "timestamp", "input_text", "output_text",
          "model_label", "unapproved", "change_id")  # fmt: skip


def test_protobuf_maps_spans_exactly_like_json(ingest_client, deployed, live_hash):
    original = export(live_hash)
    document = as_hex_ids(original)
    url = f"/api/v1/systems/{deployed.system_id}/otlp/v1/traces"
    proto = ingest_client.post(
        url, data=to_protobuf(original), content_type="application/x-protobuf"
    ).json()
    by_proto = {
        d.idempotency_key: tuple(getattr(d, f) for f in FIELDS) for d in Decision.objects.all()
    }
    assert (proto["spans"], proto["skipped"], proto["without_content"]) == (5, 1, 2)
    assert proto["accepted"] == 3 and proto["rejected"] == 1
    assert "protocol_sha256" in proto["partialSuccess"]["errorMessage"]
    # The same spans as JSON are the same decisions: same keys, so all duplicates ...
    again = post(ingest_client, deployed.system_id, document).json()
    assert again["accepted"] == 0 and again["duplicates"] == 3
    # ... and, stored fresh through JSON, field for field identical.
    Decision.objects.all().delete()
    post(ingest_client, deployed.system_id, document)
    by_json = {
        d.idempotency_key: tuple(getattr(d, f) for f in FIELDS) for d in Decision.objects.all()
    }
    assert by_json == by_proto and len(by_json) == 3
    trace, span = b"t1".ljust(16, b"\0").hex(), b"s1".ljust(8, b"\0").hex()
    first = Decision.objects.get(idempotency_key=f"otlp-{trace}-{span}")
    assert first.output_text == "NEEDS_SECOND_APPROVER" and first.model_label == "gpt-x"


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"{nope"])
def test_bad_protobuf_is_a_400_with_the_reason(ingest_client, deployed, body):
    response = ingest_client.post(
        f"/api/v1/systems/{deployed.system_id}/otlp/v1/traces",
        data=body,
        content_type="application/x-protobuf",
    )
    assert response.status_code == 400, response.content
    assert "ExportTraceServiceRequest" in response.json()["detail"]
    assert not Decision.objects.exists()
