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


def test_protobuf_and_oversized_bodies_are_refused(ingest_client, deployed, live_hash, settings):
    assert post(ingest_client, deployed.system_id, {}, "application/x-protobuf").status_code == 415
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
