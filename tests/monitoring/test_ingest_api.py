"""Live decision ingestion: per-line errors, idempotency, scope, caps, unapproved flag."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from rest_framework.test import APIClient

from changes.models import AuditEvent
from monitoring import ingest, services
from monitoring.live import live_protocol_hash
from monitoring.models import Decision, Incident
from tests.factories import SystemFactory

from .conftest import decision, jsonl, post_jsonl

pytestmark = pytest.mark.django_db


def test_jsonl_batch_with_bad_lines_keeps_the_good_ones(ingest_client, deployed, live_hash):
    now = datetime.now(UTC)
    body = jsonl(
        [
            decision(live_hash, idempotency_key="good-1"),
            b"{not json",
            decision(live_hash, idempotency_key="nul", output="a\x00b"),
            decision(live_hash, timestamp=(now + timedelta(hours=2)).isoformat()),
            decision(live_hash, timestamp=(now - timedelta(days=800)).isoformat()),
            decision(live_hash, environment="moon-base"),
            decision(live_hash, timestamp="2026-01-01T00:00:00"),
            decision(live_hash, idempotency_key="good-2", output=None, input=None),
        ]
    )
    body += b'{"idempotency_key": "raw-nul\x00"}\n'
    response = post_jsonl(ingest_client, deployed.system_id, body)
    assert response.status_code == 200, response.content
    report = response.json()
    assert report["accepted"] == 2
    assert report["rejected"] == 7
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert "not valid JSON" in reasons[2]
    assert "NUL" in reasons[3]
    assert "future" in reasons[4]
    assert "older than" in reasons[5]
    assert "unknown environment" in reasons[6]
    assert "UTC offset" in reasons[7]
    assert "NUL" in reasons[9]
    assert set(Decision.objects.values_list("idempotency_key", flat=True)) == {"good-1", "good-2"}
    assert not Decision.objects.filter(unapproved=True).exists()
    assert Decision.objects.get(idempotency_key="good-1").change_id == deployed.pk


def test_replayed_batch_creates_no_duplicates(ingest_client, deployed, live_hash):
    body = jsonl(
        [decision(live_hash) for _ in range(5)] + [decision(live_hash, idempotency_key="x")]
    )
    body += jsonl([decision(live_hash, idempotency_key="x")])  # duplicate within the batch
    first = post_jsonl(ingest_client, deployed.system_id, body).json()
    second = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert (first["accepted"], first["duplicates"]) == (6, 1)
    assert (second["accepted"], second["duplicates"]) == (0, 7)
    assert Decision.objects.count() == 6


def test_json_array_body_is_accepted_element_by_element(ingest_client, deployed, live_hash):
    records = [decision(live_hash, output='tricky "]," [{ text'), 5, decision(live_hash)]
    response = ingest_client.post(
        f"/api/v1/systems/{deployed.system_id}/decisions/",
        data=orjson.dumps(records),
        content_type="application/json",
    )
    report = response.json()
    assert report["accepted"] == 2
    assert report["errors"] == [{"line": 2, "reason": "a decision must be a JSON object"}]
    assert Decision.objects.filter(output_text='tricky "]," [{ text').exists()


def test_not_an_array_is_one_error(ingest_client, deployed):
    response = ingest_client.post(
        f"/api/v1/systems/{deployed.system_id}/decisions/",
        data=b'{"a": 1}',
        content_type="application/json",
    )
    assert response.json()["errors"][0]["reason"] == "the body is not a JSON array"


def test_huge_output_is_truncated_and_flagged(ingest_client, deployed, live_hash, settings):
    settings.MONITORING_MAX_TEXT_CHARS = 100
    body = jsonl([decision(live_hash, output="y" * 5000)])
    report = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert report["truncated"] == 1
    row = Decision.objects.get()
    assert row.output_truncated and len(row.output_text) == 100


def test_over_long_line_is_skipped_and_reported(ingest_client, deployed, live_hash, settings):
    settings.MONITORING_MAX_LINE_BYTES = 500
    body = jsonl([decision(live_hash, output="z" * 2000), decision(live_hash)])
    report = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert report["accepted"] == 1
    assert report["errors"] == [{"line": 1, "reason": "line longer than 500 bytes"}]


def test_body_over_the_cap_is_refused_unread(ingest_client, deployed, settings):
    settings.MONITORING_MAX_BODY_BYTES = 1000

    class Exploding(io.BytesIO):
        def read(self, *a):  # pragma: no cover - must never be called
            raise AssertionError("the body was read")

        readline = read

    response = ingest_client.generic(
        "POST",
        f"/api/v1/systems/{deployed.system_id}/decisions/",
        content_type="application/x-ndjson",
        CONTENT_LENGTH="1073741824",
        **{"wsgi.input": Exploding()},
    )
    assert response.status_code == 413
    assert "cap" in response.json()["detail"]


def test_token_of_another_system_is_403(token_secret, deployed, live_hash):
    other = SystemFactory(owner_team=deployed.system.owner_team)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret}")
    response = post_jsonl(client, other.pk, jsonl([decision(live_hash)]))
    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_user_token_and_bad_token_are_refused(deployed, live_hash, engineer):
    client = APIClient()
    response = post_jsonl(client, deployed.system_id, jsonl([decision(live_hash)]))
    assert response.status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION="Bearer pcm_ing_nope")
    assert post_jsonl(client, deployed.system_id, b"").status_code == 401


def test_per_token_rate_limit(deployed, admin_user, live_hash):
    _, secret = services.ingest_token_create(
        actor=admin_user, system=deployed.system, name="slow", rate_per_minute=2
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    codes = [
        post_jsonl(client, deployed.system_id, jsonl([decision(live_hash)])).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_only_admins_and_owners_create_tokens(deployed, reviewer, engineer):
    from core.errors import NotAllowed

    with pytest.raises(NotAllowed):
        services.ingest_token_create(actor=reviewer, system=deployed.system, name="x")
    token, secret = services.ingest_token_create(actor=engineer, system=deployed.system, name="t")
    assert secret not in (token.secret_sha256, token.prefix) and len(secret) > 40
    assert services.token_for_secret(secret) == token


def test_token_api_shows_secret_once(deployed, engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    response = client.post(
        f"/api/v1/systems/{deployed.system_id}/ingest-tokens/", {"name": "ci"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["secret"].startswith("pcm_ing_")


def test_unapproved_protocol_is_flagged_and_opens_one_incident(ingest_client, deployed, live_hash):
    rogue = "f" * 64
    assert live_protocol_hash(deployed.system, "production") == live_hash
    body = jsonl([decision(rogue) for _ in range(3)] + [decision(live_hash)])
    report = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert report["unapproved"] == 3
    assert Decision.objects.filter(unapproved=True).count() == 3
    incident = Incident.objects.get()
    assert incident.kind == "unapproved_protocol" and incident.state == "open"
    assert incident.occurrences == 3
    assert report["incidents"] == [incident.pk]
    post_jsonl(ingest_client, deployed.system_id, jsonl([decision(rogue)]))
    assert Incident.objects.count() == 1
    assert Incident.objects.get().occurrences == 4
    assert AuditEvent.objects.filter(verb="incident.opened").count() == 1


def test_staging_with_nothing_live_flags_every_hash(ingest_client, deployed, live_hash):
    report = post_jsonl(
        ingest_client, deployed.system_id, jsonl([decision(live_hash, environment="staging")])
    ).json()
    assert report["unapproved"] == 1


def test_jsonl_reader_is_bounded():
    """The reader never asks the stream for more than the line cap at once."""
    asked = []

    class Spy(io.BytesIO):
        def readline(self, size=-1):
            asked.append(size)
            return super().readline(size)

    list(ingest.jsonl_records(Spy(b"a\n" * 10 + b"b" * 5_000_000 + b"\n")))
    assert asked and all(0 < size <= ingest.max_line() + 1 for size in asked)


def test_revoked_token_is_refused_at_once(ingest_client, deployed, live_hash, engineer, reviewer):
    from monitoring.models import IngestToken

    token = IngestToken.objects.get()
    client = APIClient()
    client.force_authenticate(reviewer)
    url = f"/api/v1/systems/{deployed.system_id}/ingest-tokens/{token.pk}/"
    assert client.delete(url).status_code == 403
    assert (
        post_jsonl(ingest_client, deployed.system_id, jsonl([decision(live_hash)])).status_code
        == 200
    )
    client.force_authenticate(engineer)
    assert client.delete(url).status_code == 204
    assert client.delete(url).status_code == 204  # idempotent
    assert (
        post_jsonl(ingest_client, deployed.system_id, jsonl([decision(live_hash)])).status_code
        == 401
    )
    assert AuditEvent.objects.filter(verb="monitoring.token_revoked").count() == 1
