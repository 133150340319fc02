"""Memory stays flat while a large JSONL body streams through the endpoint: the peak Python
allocation is a small fraction of the body (batches of MONITORING_INGEST_BATCH, not the body,
are held)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import orjson
import pytest

from monitoring.models import Decision

pytestmark = pytest.mark.django_db


class GeneratedBody:
    """A wsgi.input that makes its JSONL lines on demand (the body never exists whole)."""

    def __init__(self, lines: int, digest: str):
        self.lines, self.digest, self.i = lines, digest, 0
        self.buffer = b""
        self.stamp = datetime.now(UTC).isoformat()
        self.size = sum(len(self._line(i)) for i in range(lines))

    def _line(self, i: int) -> bytes:
        record = {
            "idempotency_key": f"mem-{i:08d}",
            "timestamp": "T",
            "environment": "production",
            "protocol_sha256": self.digest,
            "output": "x" * 1500,
        }
        return orjson.dumps(record).replace(b'"T"', b'"' + self.stamp.encode() + b'"') + b"\n"

    def readline(self, size=-1):
        if not self.buffer and self.i < self.lines:
            self.buffer = self._line(self.i)
            self.i += 1
        if size is None or size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def read(self, size=-1):
        return self.readline(size)


def _peak(client, system_id: int, lines: int, digest: str) -> tuple[int, int]:
    body = GeneratedBody(lines, digest)
    tracemalloc.start()
    try:
        response = client.generic(
            "POST",
            f"/api/v1/systems/{system_id}/decisions/",
            content_type="application/x-ndjson",
            CONTENT_LENGTH=str(body.size),
            **{"wsgi.input": body},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.content[:300]
    assert response.json()["accepted"] == lines
    return peak, body.size


def test_memory_is_flat_while_streaming(ingest_client, deployed, live_hash, settings):
    settings.MONITORING_INGEST_BATCH = 200
    ingest_client.post(  # warm imports and caches outside the measurement
        f"/api/v1/systems/{deployed.system_id}/decisions/",
        data=b"",
        content_type="application/x-ndjson",
    )
    small, small_size = _peak(ingest_client, deployed.system_id, 1_500, live_hash)
    Decision.objects.all().delete()
    large, large_size = _peak(ingest_client, deployed.system_id, 6_000, live_hash)
    assert large_size > 9_000_000
    # Four times the body, about the same peak: memory does not grow with the body.
    assert large < small * 1.5, (small, large)
    assert large < large_size / 8, (large, large_size)
