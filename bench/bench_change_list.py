"""The change-list API at 10,000 changes.

Figures: queries per request at page sizes 10 and 100 (must be equal: constant in page
size), p50/p95 latency of a 25-row page, and requests/s as a ratio to a raw ``JsonResponse``
of the same rows through the same middleware in the same run (target >= 0.4).
"""

from __future__ import annotations

import os
import time

from django.http import JsonResponse
from django.urls import include, path

from bench.support import django_setup, figure, percentiles

N_CHANGES = int(os.environ.get("BENCH_CHANGES", "10000"))
REQUESTS = int(os.environ.get("BENCH_LIST_REQUESTS", "300"))
PAGE = 25
FIELDS = (
    "id", "title", "system", "system__name", "state", "risk", "change_type",
    "author__username", "content_sha256", "revision", "retrospective_pending",
    "created_at", "updated_at", "submitted_at", "deployed_at",
)  # fmt: skip


def raw_rows(request):
    """Baseline: the same page of rows, serialised by JsonResponse, no DRF, no scoping."""
    from changes.models import ChangeRequest

    rows = list(ChangeRequest.objects.order_by("-id").values(*FIELDS)[:PAGE])
    return JsonResponse({"results": rows})


urlpatterns: list = []  # filled by run() once Django is set up


def _install_urls() -> None:
    urlpatterns[:] = [path("bench/raw-changes/", raw_rows), path("", include("config.urls"))]


def _seed():
    from django.contrib.auth.models import Group, User

    from changes import content, tokens
    from changes.models import AISystem, ChangeRequest, ProtocolVersion, Team

    team, _ = Team.objects.get_or_create(name="bench-list-team")
    author, _ = User.objects.get_or_create(username="bench-list-engineer")
    author.groups.add(Group.objects.get(name="engineer"))
    team.members.add(author)
    auditor, _ = User.objects.get_or_create(username="bench-list-auditor")
    auditor.groups.add(Group.objects.get(name="auditor"))
    systems = []
    for i in range(10):
        system, _ = AISystem.objects.get_or_create(
            name=f"bench-list-{i}", defaults={"owner_team": team, "target": {}}
        )
        protos = [
            ProtocolVersion.objects.get_or_create(
                system=system, version=v,
                defaults={"system_prompt": "p", "content_sha256": content.protocol_sha256(
                    version=v, body="", system_prompt="p")},
            )[0]
            for v in ("v1", "v2")
        ]  # fmt: skip
        systems.append((system, protos))
    existing = ChangeRequest.objects.count()
    states = ["draft", "evaluating", "awaiting_review", "approved", "deployed"]
    ChangeRequest.objects.bulk_create(
        [
            ChangeRequest(
                system=systems[i % 10][0], base_protocol=systems[i % 10][1][0],
                proposed_protocol=systems[i % 10][1][1], title=f"Bench change {i}",
                rationale="r" * 500, test_plan="t" * 200, author=author,
                state=states[i % len(states)], content_sha256=f"{i:064x}",
            )
            for i in range(existing, N_CHANGES)
        ],
        batch_size=2000,
    )  # fmt: skip
    _, key = tokens.issue(auditor, scopes=["read"])
    _settle()
    return key


def _settle() -> None:
    """VACUUM ANALYZE after the bulk insert, as autovacuum would on a live table.

    Freshly COPYed rows have no visibility map and no statistics, so COUNT(*) scans the heap
    (2.2 ms at 10,000 rows here) instead of an index (0.6 ms): measuring that would time
    PostgreSQL's housekeeping lag, not the API.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE changes_changerequest")


def _queries(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(ctx.captured_queries)


def _loop(client, url) -> list[float]:
    client.get(url)  # warm
    out = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url)
        out.append(time.perf_counter() - started)
        assert response.status_code == 200
    return out


def run() -> dict:
    django_setup()
    from django.test import Client
    from django.test.utils import override_settings

    token = _seed()
    _install_urls()
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", SERVER_NAME="localhost")
    with override_settings(ROOT_URLCONF=__name__):
        q10 = _queries(client, "/api/v1/changes/?page_size=10")
        q100 = _queries(client, "/api/v1/changes/?page_size=100")
        ours = _loop(client, f"/api/v1/changes/?page_size={PAGE}")
        raw = _loop(client, "/bench/raw-changes/")
    p_ours, p_raw = percentiles(ours), percentiles(raw)
    rps_ours, rps_raw = len(ours) / sum(ours), len(raw) / sum(raw)
    ratio = rps_ours / rps_raw
    return {
        "title": f"Change-list API at {N_CHANGES:,} changes",
        "figures": [
            figure("queries per request, page size 10", q10, "queries",
                   baseline={"name": "page size 100", "value": q100, "unit": "queries"},
                   ratio=q10 / q100, target="equal (constant in page size)", met=q10 == q100),
            figure(f"latency p50 ({PAGE}-row page)", p_ours["p50"] * 1000, "ms",
                   baseline={"name": "raw JsonResponse p50", "value": p_raw["p50"] * 1000,
                             "unit": "ms"}, ratio=p_ours["p50"] / p_raw["p50"]),
            figure(f"latency p95 ({PAGE}-row page)", p_ours["p95"] * 1000, "ms",
                   baseline={"name": "raw JsonResponse p95", "value": p_raw["p95"] * 1000,
                             "unit": "ms"}, ratio=p_ours["p95"] / p_raw["p95"]),
            figure("requests/s", rps_ours, "req/s",
                   baseline={"name": "raw JsonResponse", "value": rps_raw, "unit": "req/s"},
                   ratio=ratio, target=">= 0.4 of raw", met=ratio >= 0.4),
        ],
        "notes": [
            f"{REQUESTS} sequential requests each, in-process Django test client, auditor token.",
            "Ours: token auth (roles read in the same query), scoping, the filter backend, "
            "COUNT(*) for pagination, rows shaped by selectors.change_summaries, DRF's response.",
            "The table is VACUUM ANALYZEd after seeding, as autovacuum would do.",
        ],
    }  # fmt: skip
