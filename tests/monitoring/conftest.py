"""Fixtures: a system whose change is deployed to production, and an ingestion token."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import orjson
import pytest
from rest_framework.test import APIClient

from changes import states
from changes.models import Deployment
from monitoring import services
from tests.factories import make_change

_keys = itertools.count()


@pytest.fixture
def deployed(engineer, admin_user):
    """A change deployed to production (recorded directly: the workflow is tested elsewhere)."""
    change = make_change(author=engineer)
    type(change).objects.filter(pk=change.pk).update(state=states.DEPLOYED)
    change.refresh_from_db()
    record_live(change, "production", admin_user)
    return change


def record_live(change, environment, user):
    """Record a deployment of ``change`` to ``environment`` and point the live registry at it
    (what ``changes.env_services.deploy`` writes, without its gate)."""
    from django.utils import timezone

    from changes.env_models import Environment, LiveVersion

    deployment = Deployment.objects.create(
        change=change,
        environment=environment,
        content_sha256=change.content_sha256,
        deployed_by=user,
        protocol=change.proposed_protocol,
    )
    env = Environment.objects.get(system=change.system, name=environment)
    LiveVersion.objects.update_or_create(
        environment=env,
        defaults={
            "protocol": change.proposed_protocol,
            "deployment": deployment,
            "since": timezone.now(),
        },
    )
    return deployment


@pytest.fixture
def live_hash(deployed):
    return deployed.proposed_protocol.content_sha256


@pytest.fixture
def token_secret(deployed, admin_user):
    _, secret = services.ingest_token_create(
        actor=admin_user, system=deployed.system, name="prod", rate_per_minute=1000
    )
    return secret


@pytest.fixture
def ingest_client(token_secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret}")
    return client


def decision(live_hash: str, **over) -> dict:
    record = {
        "idempotency_key": f"k-{next(_keys)}",
        "timestamp": datetime.now(UTC).isoformat(),
        "environment": "production",
        "protocol_sha256": live_hash,
        "input": "request",
        "output": "NEEDS_SECOND_APPROVER",
    }
    record.update(over)
    return record


def jsonl(records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)


def post_jsonl(client, system_id: int, body: bytes):
    return client.post(
        f"/api/v1/systems/{system_id}/decisions/", data=body, content_type="application/x-ndjson"
    )


MONITOR_GRADERS = {
    "new": {"contains": "NEEDS_SECOND_APPROVER"},
    "legacy": {"regex": r"\bapprove[sd]?\b", "ignore_case": True},
}


@pytest.fixture
def monitor(deployed, admin_user):
    return services.monitor_set(
        actor=admin_user,
        change=deployed,
        graders=MONITOR_GRADERS,
        evaluated_condition="unmonitored",
    )


def store(change, outputs, *, environment="production", start=None, probe=False):
    """Insert decisions directly (ingestion is tested on its own), with their grade
    tickets as ingestion writes them."""
    from django.db import transaction

    from monitoring import tickets
    from monitoring.models import Decision

    start = start or datetime.now(UTC)
    rows = [
        Decision(
            system_id=change.system_id,
            change=change,
            idempotency_key=f"s-{next(_keys)}",
            environment=environment,
            protocol_sha256=change.proposed_protocol.content_sha256,
            timestamp=start,
            received_at=start,
            output_text=text,
            is_probe=probe,
        )
        for text in outputs
    ]
    with transaction.atomic():
        made = Decision.objects.bulk_create(rows)
        tickets.write(change.system_id, ((d.pk, d.change_id, d.timestamp) for d in made))
    return made


def labels(decisions=None) -> dict[int, str]:
    """``{decision id: grader label}`` of the graded ones (of ``decisions``, default all),
    read through the grade-log selector."""
    from monitoring.models import Decision
    from monitoring.selectors import labels_for

    ids = (
        [d.pk for d in decisions]
        if decisions is not None
        else Decision.objects.values_list("pk", flat=True)
    )
    return {pk: label for pk, (label, _error) in labels_for(ids).items()}


def evaluated(change, *, rate=0.90, n=500, conditions=("monitored", "unmonitored"), user=None):
    """A completed evaluation run of the change with ``rate`` in every condition."""
    from evaluations.models import EvaluationRun, Suite
    from evaluations.stats import wilson

    suite = Suite.objects.create(
        name=f"suite-{next(_keys)}",
        version="1",
        document={},
        source_text="{}",
        source_format="json",
        content_sha256="a" * 64,
        created_by=user or change.author,
    )
    k = round(rate * n)
    stats = {
        "conditions": {
            c: {"n": n, "new": {"count": k, "rate": k / n, "ci": list(wilson(k, n))}}
            for c in conditions
        }
    }
    return EvaluationRun.objects.create(
        change=change,
        suite=suite,
        content_sha256=change.content_sha256,
        protocol=change.proposed_protocol,
        system_prompt="p",
        target={},
        status=EvaluationRun.COMPLETED,
        verdict="pass",
        stats=stats,
    )
