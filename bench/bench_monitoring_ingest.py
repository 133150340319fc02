"""Live-decision ingestion and grading throughput (docs/MONITORING.md).

Ingestion: ``BENCH_INGEST_N`` (20,000) decisions posted as JSONL in batches of 5,000 through
the real endpoint (in-process Django client: token auth, rate limit, streamed parse,
per-record validation, idempotency check, id pre-assignment, COPY, grade tickets).
Baseline, same run, same rows: a raw psycopg ``COPY ... FROM STDIN`` into the same table
(PostgreSQL), or ``executemany`` INSERTs (SQLite).

Grading: the same decisions graded by ``monitoring.grading.grade_pending`` (claim grade
tickets, read the decisions, grade with the suite regex graders, append the grade log, delete
the tickets, rollups, review sampling). Baseline: a bare loop calling the same compiled
labeller (``evaluations.graders.labeller``) on the same outputs.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from datetime import UTC, datetime

from .support import django_setup, figure, is_postgres

N = int(os.environ.get("BENCH_INGEST_N", "20000"))
BATCH = 5000
GRADERS = {
    "new": {"regex": r"NEEDS_SECOND_APPROVER"},
    "legacy": {"regex": r"\"decision\":\s*\"approve\""},
}


def _seed():
    from django.contrib.auth.models import User
    from django.utils import timezone

    from changes import content
    from changes.env_models import Environment, LiveVersion
    from changes.models import AISystem, ChangeRequest, Deployment, ProtocolVersion, Team
    from monitoring import services
    from monitoring.models import Monitor

    tag = uuid.uuid4().hex[:8]
    team = Team.objects.create(name=f"bench-mon-{tag}")
    user = User.objects.create(username=f"bench-mon-{tag}", is_superuser=True, is_staff=True)
    system = AISystem.objects.create(name=f"bench-mon-{tag}", owner_team=team, target={})
    protos = [
        ProtocolVersion.objects.create(
            system=system, version=v, system_prompt="p",
            content_sha256=content.protocol_sha256(version=v, body="", system_prompt="p"),
        )
        for v in ("v1", "v2")
    ]  # fmt: skip
    change = ChangeRequest.objects.create(
        system=system, base_protocol=protos[0], proposed_protocol=protos[1], title="t",
        rationale="r", test_plan="t", author=user, state="deployed", content_sha256="c" * 64,
    )  # fmt: skip
    deployment = Deployment.objects.create(
        change=change, environment="production", content_sha256="c" * 64, deployed_by=user,
        protocol=protos[1],
    )  # fmt: skip
    # What is live comes from the registry (monitoring/live.py), as a real deploy records it.
    LiveVersion.objects.update_or_create(
        environment=Environment.objects.get(system=system, name="production"),
        defaults={"protocol": protos[1], "deployment": deployment, "since": timezone.now()},
    )
    Monitor.objects.create(change=change, graders=GRADERS, created_by=user)
    _, secret = services.ingest_token_create(
        actor=user, system=system, name="bench", rate_per_minute=100_000
    )
    return system, change, protos[1].content_sha256, secret


def _rows(prefix: str, digest: str) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "idempotency_key": f"{prefix}-{i}",
            "timestamp": now,
            "environment": "production",
            "protocol_sha256": digest,
            "input": f"Access request AR-{i}: prod-db-admin for dana.k, one approval on file.",
            "output": '{"decision": "NEEDS_SECOND_APPROVER", "policy_clause": "AR-2"}'
            if i % 10
            else '{"decision": "approve", "policy_clause": "manager"}',
            "model_label": "bench",
        }
        for i in range(N)
    ]


def _raw_insert(system, change, rows) -> float:
    from django.db import connection, transaction

    cols = (
        "system_id, change_id, idempotency_key, environment, protocol_sha256, timestamp, "
        "received_at, input_text, output_text, output_truncated, reasoning, model_label, "
        "is_probe, unapproved"
    )
    now = datetime.now(UTC)
    values = [
        (system.pk, change.pk, "raw-" + r["idempotency_key"], r["environment"],
         r["protocol_sha256"], now, now, r["input"], r["output"], False, "", r["model_label"],
         False, False)
        for r in rows
    ]  # fmt: skip
    started = time.perf_counter()
    with transaction.atomic():
        if is_postgres():
            raw = connection.cursor().cursor
            with raw.copy(f"COPY monitoring_decision ({cols}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * 14)
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO monitoring_decision ({cols}) VALUES ({marks})",  # noqa: S608
                    values,
                )
    return time.perf_counter() - started


def run() -> dict:
    django_setup()
    import orjson
    from django.test import Client

    from evaluations import graders
    from monitoring import grading
    from monitoring.models import Decision

    system, change, digest, secret = _seed()
    rows = _rows(uuid.uuid4().hex[:6], digest)
    bodies = [
        b"".join(orjson.dumps(r) + b"\n" for r in rows[i : i + BATCH])
        for i in range(0, len(rows), BATCH)
    ]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}", SERVER_NAME="localhost")
    url = f"/api/v1/systems/{system.pk}/decisions/"
    warm = orjson.dumps({**rows[0], "idempotency_key": "warm-up"}) + b"\n"
    client.post(url, data=warm, content_type="application/x-ndjson")  # imports, caches
    # The collector's state is the same for both timed phases: what exists now (the app's
    # import-time objects and this bench's 20,000 fixture rows) is frozen out of the cyclic
    # collector, as a pre-forked server's startup heap is. Without it, when a full
    # collection over the fixtures fired decided the figure (one request 239 ms against
    # 120 ms for the others).
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for body in bodies:
        response = client.post(url, data=body, content_type="application/x-ndjson")
        assert response.status_code == 200 and response.json()["rejected"] == 0, response.content
    ours = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    raw = _raw_insert(system, change, rows)
    # The raw rows are not ours to grade: they only measured the insert.
    Decision.objects.filter(idempotency_key__startswith="raw-").delete()

    outputs = [r["output"] for r in rows]
    # The baseline is the cheapest correct way to label these outputs: the same compiled
    # labeller online grading uses, in a bare loop (no claim, no writes, no rollups). The
    # full ``graders.grade`` (with match evidence) is reported beside it, for reference.
    started = time.perf_counter()
    for text in outputs:
        graders.grade(GRADERS, text)
    bare_grade = time.perf_counter() - started
    label = graders.labeller(GRADERS)
    started = time.perf_counter()
    for text in outputs:
        label(text)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    graded = grading.grade_pending(system_id=system.pk, max_batches=10_000)
    grade_time = time.perf_counter() - started
    assert graded == N + 1, graded
    gc.unfreeze()  # the next benchmark in this process starts with a normal collector

    rate, raw_rate = N / ours, N / raw
    g_rate, bare_rate, grade_rate = N / grade_time, N / bare, N / bare_grade
    return {
        "title": "Live decisions: ingestion and grading",
        "figures": [
            figure("JSONL ingestion through the API", rate, "decisions/s",
                   baseline={"name": "raw COPY" if is_postgres() else "raw executemany",
                             "value": raw_rate, "unit": "decisions/s"},
                   ratio=rate / raw_rate, target=">= 0.3x raw and >= 10,000/s",
                   met=rate / raw_rate >= 0.3 and rate >= 10_000),
            figure("online regex grading (tickets, grade, grade log, rollups, review)",
                   g_rate, "decisions/s",
                   baseline={"name": "bare loop of the same compiled labeller",
                             "value": bare_rate, "unit": "decisions/s"},
                   ratio=g_rate / bare_rate, target=">= 0.5x the bare loop",
                   met=g_rate / bare_rate >= 0.5),
            figure("online grading against a bare graders.grade loop (with match evidence)",
                   g_rate, "decisions/s",
                   baseline={"name": "bare graders.grade loop", "value": grade_rate,
                             "unit": "decisions/s"},
                   ratio=g_rate / grade_rate),
        ],
        "notes": [
            f"{N:,} decisions, JSONL batches of {BATCH:,}, in-process Django client.",
            "Grading batches of MONITORING_GRADE_BATCH, one transaction each.",
        ],
    }  # fmt: skip
