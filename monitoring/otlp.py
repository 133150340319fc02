"""OTLP/HTTP JSON traces -> decisions, following the OpenTelemetry GenAI semantic conventions.

A span is a decision when it carries ``gen_ai.*`` attributes. Mapping:

- ``idempotency_key``: ``otlp-<traceId>-<spanId>`` (a re-exported span is a duplicate)
- ``timestamp``: ``startTimeUnixNano``
- ``environment``: resource (or span) attribute ``deployment.environment.name`` (older:
  ``deployment.environment``)
- ``protocol_sha256``: attribute ``pcm.protocol_sha256`` (the hash the caller served)
- ``input``: ``gen_ai.input.messages`` (JSON text), else the ``content`` of
  ``gen_ai.system.message`` / ``gen_ai.user.message`` events
- ``output``: ``gen_ai.output.messages``, else the ``message``/``content`` of ``gen_ai.choice``
  events, else ``gen_ai.completion``
- ``model_label``: ``gen_ai.response.model``, else ``gen_ai.request.model``

Spans without message content are accepted (output empty) and counted; spans with no
``gen_ai.*`` attribute are skipped and counted. The body is JSON or protobuf
(``application/x-protobuf``, an ``ExportTraceServiceRequest``) and bounded by
``MONITORING_OTLP_MAX_BYTES``.

Protobuf is decoded with the generated classes of ``opentelemetry-proto`` and rewritten into
the OTLP/JSON shape (``traceId``/``spanId`` as lowercase hex, as the OTLP JSON encoding
specifies, 64-bit integers as strings) so that both encodings go through ONE mapping
(``span_to_record``): the same span exported either way is the same decision, with the same
idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import orjson


def _value(v: dict):
    if not isinstance(v, dict):
        return None
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def attributes(items) -> dict:
    out = {}
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = _value(item.get("value"))
    return out


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def span_to_record(span: dict, resource: dict) -> tuple[dict | None, bool]:
    """(record or None when not a GenAI span, has_content)."""
    attrs = attributes(span.get("attributes"))
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None, False
    events = [
        (e.get("name"), attributes(e.get("attributes")))
        for e in span.get("events") or []
        if isinstance(e, dict)
    ]
    inputs = attrs.get("gen_ai.input.messages")
    if inputs is None:
        parts = [
            a.get("content")
            for name, a in events
            if name in ("gen_ai.system.message", "gen_ai.user.message") and a.get("content")
        ]
        inputs = "\n".join(str(p) for p in parts) or None
    output = attrs.get("gen_ai.output.messages")
    if output is None:
        parts = [
            a.get("message") or a.get("content")
            for name, a in events
            if name == "gen_ai.choice" and (a.get("message") or a.get("content"))
        ]
        output = "\n".join(_text(p) for p in parts) or attrs.get("gen_ai.completion")
    env = (
        attrs.get("deployment.environment.name")
        or resource.get("deployment.environment.name")
        or attrs.get("deployment.environment")
        or resource.get("deployment.environment")
    )
    try:
        nanos = int(span.get("startTimeUnixNano") or 0)
        stamp = datetime.fromtimestamp(nanos / 1e9, tz=UTC).isoformat() if nanos else None
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = None
    record = {
        "idempotency_key": f"otlp-{span.get('traceId', '')}-{span.get('spanId', '')}"[:128],
        "timestamp": stamp,
        "environment": env,
        "protocol_sha256": attrs.get("pcm.protocol_sha256") or resource.get("pcm.protocol_sha256"),
        "input": _text(inputs),
        "output": _text(output),
        "model_label": str(
            attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or ""
        )[:100],
    }
    return record, output is not None


class ProtobufError(ValueError):
    """The body is not a decodable ``ExportTraceServiceRequest`` (the reason is in words)."""


def _any_json(value) -> dict:
    """An ``AnyValue`` in its OTLP/JSON form (only the kinds ``_value`` reads keep a value)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "double_value":
        return {"doubleValue": value.double_value}
    if kind == "array_value":
        return {"arrayValue": {"values": [_any_json(v) for v in value.array_value.values]}}
    return {}


def _attributes_json(items) -> list[dict]:
    return [{"key": kv.key, "value": _any_json(kv.value)} for kv in items]


def protobuf_document(body: bytes) -> dict:
    """Decode an OTLP/HTTP protobuf ``ExportTraceServiceRequest`` into the OTLP/JSON shape
    ``records`` reads; raises :class:`ProtobufError` with the decoder's reason."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as error:
        raise ProtobufError(f"not an OTLP ExportTraceServiceRequest ({error})") from None
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes_json(rs.resource.attributes)},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": span.trace_id.hex(),
                                "spanId": span.span_id.hex(),
                                "name": span.name,
                                "startTimeUnixNano": str(span.start_time_unix_nano),
                                "attributes": _attributes_json(span.attributes),
                                "events": [
                                    {"name": e.name, "attributes": _attributes_json(e.attributes)}
                                    for e in span.events
                                ],
                            }
                            for span in ss.spans
                        ]
                    }
                    for ss in rs.scope_spans
                ],
            }
            for rs in request.resource_spans
        ]
    }


def records(document) -> tuple[Iterator[tuple[int, bytes | Exception]], dict]:
    """Records for ``decisions_ingest`` and counters ({spans, skipped, without_content})."""
    counts = {"spans": 0, "skipped": 0, "without_content": 0}
    out: list[tuple[int, bytes | Exception]] = []
    if not isinstance(document, dict):
        return iter([(1, ValueError("not an OTLP ExportTraceServiceRequest"))]), counts
    for rs in document.get("resourceSpans") or []:
        resource = attributes(((rs or {}).get("resource") or {}).get("attributes"))
        for ss in (rs or {}).get("scopeSpans") or []:
            for span in (ss or {}).get("spans") or []:
                counts["spans"] += 1
                if not isinstance(span, dict):
                    out.append((counts["spans"], ValueError("a span must be an object")))
                    continue
                record, has_content = span_to_record(span, resource)
                if record is None:
                    counts["skipped"] += 1
                    continue
                counts["without_content"] += not has_content
                out.append((counts["spans"], orjson.dumps(record)))
    return iter(out), counts
