"""The system monitoring page (live-vs-evaluated charts) over 10 million decisions.

Seeds ``BENCH_CHART_DECISIONS`` (10,000,000) graded decisions as the rollup rows grading
would have written for them (hourly windows, the default ``MONITORING_WINDOW_MINUTES``),
written directly with ``COPY`` (grading 10M decisions first would take hours on 2 cores),
plus a raw tail of ``BENCH_CHART_TAIL`` (200,000) graded decision rows in the last day (what
the review estimates still count). Measures ``GET /monitoring/systems/<id>/`` through the
Django client (login, live map, per-environment assessment, the chart series with its
confidence sequence, review estimates, template), ``BENCH_CHART_REPEAT`` times, p50/p95.
Baseline, same run: the chart series alone (``discrepancy.series`` + the SVG).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from .support import django_setup, figure, is_postgres, percentiles

DECISIONS = int(os.environ.get("BENCH_CHART_DECISIONS", "10000000"))
TAIL = int(os.environ.get("BENCH_CHART_TAIL", "200000"))
REPEAT = int(os.environ.get("BENCH_CHART_REPEAT", "40"))
ENVIRONMENTS = ("production",)


def _seed_rollups(change, now: datetime) -> int:
    """Hourly windows back from ``now`` holding ``DECISIONS`` in all, ~90% new protocol."""
    from django.db import connection, transaction

    from monitoring.models import Rollup

    per_window = 1000
    windows = max(1, DECISIONS // per_window)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=windows)
    rows = []
    for env in ENVIRONMENTS:
        for i in range(windows):
            n = per_window
            new = 900 + (i * 7919) % 41 - 20
            legacy = (n - new) // 2
            rows.append((change.pk, env, start + timedelta(hours=i), n, new, legacy,
                         n - new - legacy, 0))  # fmt: skip
    with transaction.atomic():
        if is_postgres():
            raw = connection.cursor().cursor
            columns = 'change_id, environment, window_start, n, "new", legacy, other, errors'
            with raw.copy(f"COPY monitoring_rollup ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            Rollup.objects.bulk_create(
                Rollup(change_id=r[0], environment=r[1], window_start=r[2], n=r[3], new=r[4],
                       legacy=r[5], other=r[6], errors=r[7])
                for r in rows
            )  # fmt: skip
    return sum(r[3] for r in rows)


def _seed_tail(system, change, digest: str, now: datetime) -> None:
    from django.db import connection, transaction

    from monitoring.models import Decision

    rows = [
        (system.pk, change.pk, f"tail-{i}", "production", digest,
         now - timedelta(seconds=(i * 86400) // max(TAIL, 1)), now, "input", "output",
         False, "", "", False, False)
        for i in range(TAIL)
    ]  # fmt: skip
    columns = (
        "system_id, change_id, idempotency_key, environment, protocol_sha256, timestamp, "
        "received_at, input_text, output_text, output_truncated, reasoning, model_label, "
        "is_probe, unapproved"
    )
    with transaction.atomic():
        if is_postgres():
            raw = connection.cursor().cursor
            with raw.copy(f"COPY monitoring_decision ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            names = [c.strip() for c in columns.split(",")]
            Decision.objects.bulk_create(
                (Decision(**dict(zip(names, row, strict=True))) for row in rows),
                batch_size=5000,
            )
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE monitoring_decision")
            cursor.execute("ANALYZE monitoring_rollup")


def run() -> dict:
    django_setup()
    from django.test import Client

    from monitoring import charts, discrepancy

    from .bench_monitoring_ingest import _seed

    system, change, digest, _secret = _seed()
    now = datetime.now(UTC)
    started = time.perf_counter()
    seeded = _seed_rollups(change, now)
    _seed_tail(system, change, digest, now)
    seed_s = time.perf_counter() - started

    from django.contrib.auth.models import User

    user = User.objects.filter(username__startswith="bench-mon-").latest("id")
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    url = f"/monitoring/systems/{system.pk}/"
    first = client.get(url)
    assert first.status_code == 200, first.status_code
    assert b"<svg" in first.content
    samples = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - t)
        assert response.status_code == 200
    page = percentiles(samples)

    chart_samples = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        points = discrepancy.series(change, "production", 0.05, 0.5)
        charts.live_vs_evaluated(points, None, title="bench")
        chart_samples.append(time.perf_counter() - t)
    chart = percentiles(chart_samples)
    return {
        "title": "System monitoring page over 10 million decisions (rollups)",
        "figures": [
            figure("system monitoring page p95", page["p95"] * 1000, "ms",
                   baseline={"name": "chart series + SVG alone, p95",
                             "value": chart["p95"] * 1000, "unit": "ms"},
                   ratio=page["p95"] / chart["p95"] if chart["p95"] else None,
                   target="< 300 ms p95", met=page["p95"] < 0.300),
            figure("system monitoring page p50", page["p50"] * 1000, "ms"),
        ],
        "notes": [
            f"{seeded:,} decisions as {seeded // 1000:,} hourly rollup windows "
            f"({len(ENVIRONMENTS)} environment), plus {TAIL:,} raw graded decisions in the "
            f"last day; seeding took {seed_s:.1f} s.",
            f"{REPEAT} requests through the in-process Django client, logged in.",
        ],
    }  # fmt: skip
