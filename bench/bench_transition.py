"""A state transition's write path: lock the row, check the graph, save, append the audit
event, commit. Measured on the withdraw transition (draft -> withdrawn) of fresh changes.

Figure: p95 latency; baseline: a bare single-row UPDATE in its own transaction, same run.
Target: p95 < 20 ms.
"""

from __future__ import annotations

import os
import time

from bench.support import django_setup, figure, percentiles

N = int(os.environ.get("BENCH_TRANSITIONS", "300"))


def _fixtures():
    from django.contrib.auth.models import Group, User

    from changes import content
    from changes.models import AISystem, ChangeRequest, ProtocolVersion, Team

    team, _ = Team.objects.get_or_create(name="bench-team")
    user, _ = User.objects.get_or_create(username="bench-engineer")
    user.groups.add(Group.objects.get(name="engineer"))
    team.members.add(user)
    system, _ = AISystem.objects.get_or_create(
        name="bench-transition-system", defaults={"owner_team": team, "target": {}}
    )
    protocols = []
    for version in ("v1", "v2"):
        sha = content.protocol_sha256(version=version, body="", system_prompt="p")
        proto = ProtocolVersion.objects.filter(system=system, version=version).first()
        protocols.append(
            proto
            or ProtocolVersion.objects.create(
                system=system, version=version, system_prompt="p", content_sha256=sha
            )
        )
    changes = ChangeRequest.objects.bulk_create(
        [
            ChangeRequest(
                system=system, base_protocol=protocols[0], proposed_protocol=protocols[1],
                title=f"bench {i}", rationale="r", test_plan="t", author=user,
                content_sha256="0" * 64,
            )
            for i in range(N)
        ]
    )  # fmt: skip
    return user, [c.pk for c in changes]


def run() -> dict:
    django_setup()
    from django.db import transaction

    from changes import services
    from changes.models import ChangeRequest

    user, ids = _fixtures()
    durations = []
    for pk in ids:
        change = ChangeRequest(pk=pk)
        started = time.perf_counter()
        services.change_request_withdraw(actor=user, change_request=change, reason="bench")
        durations.append(time.perf_counter() - started)
    baseline = []
    for pk in ids:
        started = time.perf_counter()
        with transaction.atomic():
            ChangeRequest.objects.filter(pk=pk).update(title="bench")
        baseline.append(time.perf_counter() - started)
    ours, base = percentiles(durations), percentiles(baseline)
    return {
        "title": "State transition write path",
        "figures": [
            figure(
                "transition p95 (lock, check, save, audit append, commit)",
                ours["p95"] * 1000,
                "ms",
                baseline={"name": "bare UPDATE p95", "value": base["p95"] * 1000, "unit": "ms"},
                ratio=ours["p95"] / base["p95"],
                target="p95 < 20 ms",
                met=ours["p95"] * 1000 < 20,
            ),
            figure("transition p50", ours["p50"] * 1000, "ms",
                   baseline={"name": "bare UPDATE p50", "value": base["p50"] * 1000, "unit": "ms"},
                   ratio=ours["p50"] / base["p50"]),
        ],
        "notes": [f"{N} transitions (draft -> withdrawn) through changes.services."],
    }  # fmt: skip
