"""The audit log API: paginated JSON with filters, JSON-lines and CSV exports that stream
every matching event, the chain verification endpoint, and who may read any of it."""

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from changes import audit
from changes.models import AuditEvent
from tests.changes.test_api_support import (
    awaiting_review,
    denials,
    pin_null_ports,
    snapshot,
    url,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def history(engineer, engineer2):
    """Two changes' worth of events by two people."""
    first = awaiting_review(make_change(author=engineer), engineer)
    second = make_change(author=engineer2)
    return first, second


def _stream(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_auditor_reads_the_log_paginated(api, auditor, history):
    # given: a log with several events

    # when: the auditor reads it
    response = api(auditor).get(url("audit-events"))

    # then: the events, oldest first, each with its place in the chain
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == AuditEvent.objects.count()
    first = body["results"][0]
    assert first["prev_hash"] == audit.GENESIS_HASH
    assert set(first) >= {"id", "created_at", "actor_username", "verb", "object_type",
                          "object_id", "data", "prev_hash", "hash"}  # fmt: skip
    ids = [e["id"] for e in body["results"]]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("verb=change.", lambda e: e["verb"].startswith("change.")),
        ("verb=change.submitted", lambda e: e["verb"] == "change.submitted"),
        ("actor=engineer2", lambda e: e["actor_username"] == "engineer2"),
        (
            "object_type=changes.changerequest",
            lambda e: e["object_type"] == "changes.changerequest",
        ),
    ],
)
def test_audit_filters(api, auditor, history, query, check):
    # given: events of several verbs and actors

    # when: the log is filtered
    results = api(auditor).get(url("audit-events") + "?" + query).json()["results"]

    # then: only matching events, and at least one
    assert results and all(check(e) for e in results)


def test_audit_filter_by_object_and_time(api, auditor, history):
    # given: the first change's events
    first, _ = history
    expected = AuditEvent.objects.filter(
        object_id=str(first.pk), object_type="changes.changerequest"
    )

    # when: filtered by object id and a window around now
    since = (timezone.now() - timedelta(minutes=5)).isoformat()
    until = (timezone.now() + timedelta(minutes=5)).isoformat()
    response = api(auditor).get(
        url("audit-events"),
        {"object_type": "changes.changerequest", "object_id": first.pk, "since": since,
         "until": until},
    )  # fmt: skip
    later = api(auditor).get(url("audit-events"), {"since": until}).json()

    # then: exactly its events; nothing after the window
    assert [e["id"] for e in response.json()["results"]] == [e.pk for e in expected]
    assert later["count"] == 0


def test_a_bad_time_filter_is_400(api, auditor):
    # given/when: a malformed date
    response = api(auditor).get(url("audit-events"), {"since": "yesterday-ish"})
    # then: 400 naming it
    assert response.status_code == 400
    assert response.json()["detail"].startswith("since")


def test_jsonl_export_streams_every_event_and_re_verifies(api, auditor, history):
    # given: more events than a page holds
    for _ in range(30):
        audit.append(actor=auditor, verb="test.filler", data={"n": 1})
    total = AuditEvent.objects.count()
    assert total > 25

    # when: the auditor exports as JSON lines
    response = api(auditor).get(url("audit-events") + "?format=jsonl")

    # then: a streamed download, one JSON object per line, every event, not a page
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    events = [json.loads(line) for line in _stream(response).splitlines()]
    assert len(events) == total

    # and: the exported events re-hash to the stored chain, offline
    prev = audit.GENESIS_HASH
    for event in events:
        canonical = audit.canonical_event(
            actor_id=event["actor_id"],
            actor_username=event["actor_username"],
            verb=event["verb"],
            object_type=event["object_type"],
            object_id=event["object_id"],
            data=event["data"],
            created_at=datetime.fromisoformat(event["created_at"]),
        )
        assert event["prev_hash"] == prev
        assert audit.chain_hash(prev, canonical) == event["hash"]
        prev = event["hash"]


def test_jsonl_export_honours_filters(api, auditor, history):
    # given/when: an export of one verb prefix
    text = _stream(api(auditor).get(url("audit-events"), {"format": "jsonl", "verb": "change."}))
    # then: only those events
    verbs = [json.loads(line)["verb"] for line in text.splitlines()]
    assert verbs and all(v.startswith("change.") for v in verbs)
    assert len(verbs) == AuditEvent.objects.filter(verb__startswith="change.").count()


def test_csv_export(api, admin_user, history):
    # given: a log

    # when: an admin exports it as CSV
    response = api(admin_user).get(url("audit-events") + "?format=csv")

    # then: a header row and one row per event, data as JSON
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(_stream(response))))
    assert len(rows) == AuditEvent.objects.count()
    assert rows[0]["prev_hash"] == audit.GENESIS_HASH
    assert json.loads(rows[0]["data"]) == AuditEvent.objects.order_by("id").first().data


def test_csv_cells_cannot_become_spreadsheet_formulas(api, auditor):
    # given: an event whose actor name starts like a formula (e.g. an attacker's username)
    audit.append(actor=None, verb="auth.login_failed", object_type="auth.user",
                 object_id="=HYPERLINK(\"http://evil\")")  # fmt: skip

    # when: exported as CSV
    rows = list(csv.DictReader(io.StringIO(_stream(
        api(auditor).get(url("audit-events") + "?format=csv")))))  # fmt: skip

    # then: the cell is neutralised
    assert rows[-1]["object_id"].startswith("'=")


@pytest.mark.parametrize("persona", ["engineer", "reviewer", "pipeline", "outsider"])
@pytest.mark.parametrize("fmt", ["", "?format=jsonl", "?format=csv"])
def test_non_auditors_are_refused_in_every_format(request, api, history, persona, fmt):
    # given: someone who is neither auditor nor admin
    user = request.getfixturevalue(persona)
    before, denied = snapshot(), denials()

    # when: they ask for the log, in any format
    response = api(user).get(url("audit-events") + fmt)

    # then: 403 as JSON, audited as a denial, and nothing else changed
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "permission_denied"
    assert snapshot() == before
    assert denials() == denied + 1


def test_an_unknown_format_is_404(api, auditor):
    # given/when: a format nobody renders
    response = api(auditor).get(url("audit-events") + "?format=xml")
    # then: 404 as JSON
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_verify_endpoint_on_a_clean_chain(api, auditor, history):
    # given: an untouched log
    head = AuditEvent.objects.order_by("-id").first()

    # when: the auditor verifies it
    body = api(auditor).get(url("audit-verify")).json()

    # then: valid, every event counted, the head named
    assert body == {
        "valid": True,
        "events": AuditEvent.objects.count(),
        "first_bad_event": None,
        "reason": None,
        "head_id": head.pk,
        "head_hash": head.hash,
        "checkpoint": None,  # none published yet: see test_audit_checkpoints.py
    }
