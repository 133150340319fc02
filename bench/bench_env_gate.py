"""The deploy gate on a busy system: 50 open changes and 1,000 past deployments.

Figure: p95 latency of ``selectors.gate`` for one approved change (every rule: state,
approvals, evaluations, order, stale base against the live registry, blackout, and the list
of open changes), and its query count with 10 and with 1,000 past deployments (the count must
not grow). Baseline: a bare primary-key read of the change, same run. Target: p95 < 10 ms.
"""

from __future__ import annotations

import os

from bench.support import django_setup, figure, percentiles, timed

N = int(os.environ.get("BENCH_GATE_CALLS", "300"))
PAST, OPEN = 1000, 50


def _fixtures(name: str, past: int):
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from changes import content, states
    from changes.env_models import LiveVersion
    from changes.models import AISystem, ChangeRequest, Deployment, ProtocolVersion, Review, Team

    team, _ = Team.objects.get_or_create(name="bench-team")
    user, _ = User.objects.get_or_create(username="bench-engineer")
    user.groups.add(Group.objects.get(name="engineer"))
    team.members.add(user)
    reviewer, _ = User.objects.get_or_create(username="bench-reviewer")
    reviewer.groups.add(Group.objects.get(name="reviewer"))
    system = AISystem.objects.create(name=name, owner_team=team, criticality="low", target={})
    protos = [
        ProtocolVersion.objects.create(
            system=system, version=f"v{i}", system_prompt=f"p{i}",
            content_sha256=content.protocol_sha256(version=f"v{i}", body="", system_prompt=f"p{i}"),
        )
        for i in range(past + 2)
    ]  # fmt: skip

    def change(i, base, proposed, state):
        return ChangeRequest(
            system=system, base_protocol=base, proposed_protocol=proposed, title=f"bench {i}",
            rationale="r", test_plan="t", author=user, content_sha256="0" * 64, state=state,
        )  # fmt: skip

    done = ChangeRequest.objects.bulk_create(
        [change(i, protos[i], protos[i + 1], states.DEPLOYED) for i in range(past)]
    )
    now = timezone.now()
    deps = Deployment.objects.bulk_create(
        [
            Deployment(change=c, environment="production", content_sha256="0" * 64,
                       deployed_by=user, previous_protocol_id=c.base_protocol_id,
                       protocol_id=c.proposed_protocol_id)
            for c in done
        ]
    )  # fmt: skip
    live = protos[past]
    LiveVersion.objects.filter(environment__system=system, environment__name="production").update(
        protocol=live, deployment=deps[-1], since=now
    )
    ChangeRequest.objects.bulk_create(
        [change(f"open {i}", live, protos[past + 1], states.AWAITING_REVIEW) for i in range(OPEN)]
    )
    target = ChangeRequest.objects.create(
        **{f.name: getattr(change("target", live, protos[past + 1], states.APPROVED), f.name)
           for f in ChangeRequest._meta.concrete_fields if f.name != "id"}
    )  # fmt: skip
    target.content_sha256 = content.content_sha256(target)
    target.save(update_fields=["content_sha256"])
    Review.objects.create(
        change=target, reviewer=reviewer, decision="approve", content_sha256=target.content_sha256,
        signature_meaning="bench", evaluation_digest="",
    )  # fmt: skip
    return user, target


def _queries(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def run() -> dict:
    django_setup()
    import uuid

    from changes import selectors
    from changes.models import ChangeRequest

    user, target = _fixtures(f"bench-gate-{uuid.uuid4().hex[:8]}", PAST)
    _small_user, small = _fixtures(f"bench-gate-small-{uuid.uuid4().hex[:8]}", 10)

    def gate_of(pk):
        change = ChangeRequest.objects.select_related(
            "system", "base_protocol", "proposed_protocol", "author"
        ).get(pk=pk)
        return selectors.gate(change, user=user)

    def gate():
        return gate_of(target.pk)

    answer = gate()
    # No suite is linked (the engine's own benches cover evaluations): that is the only reason.
    assert answer["reasons"] == ["No evaluation suite is linked to this change."], answer
    assert len(answer["open_changes"]) == OPEN
    gate_of(small.pk)  # both warm (per-user caches) before either is counted
    q_big = _queries(gate)
    q_small = _queries(lambda: gate_of(small.pk))
    ours = percentiles(timed(gate, N))
    base = percentiles(timed(lambda: ChangeRequest.objects.get(pk=target.pk), N))
    return {
        "title": "Deploy gate on a busy system",
        "figures": [
            figure(
                f"gate p95 ({OPEN} open changes, {PAST} past deployments)", ours["p95"] * 1000,
                "ms",
                baseline={"name": "bare PK read p95", "value": base["p95"] * 1000, "unit": "ms"},
                ratio=ours["p95"] / base["p95"], target="p95 < 10 ms",
                met=ours["p95"] * 1000 < 10,
            ),
            figure("gate p50", ours["p50"] * 1000, "ms",
                   baseline={"name": "bare PK read p50", "value": base["p50"] * 1000, "unit": "ms"},
                   ratio=ours["p50"] / base["p50"]),
            figure(f"gate queries with {PAST} past deployments", q_big, "queries",
                   baseline={"name": "with 10 past deployments", "value": q_small,
                             "unit": "queries"},
                   target="constant", met=q_big == q_small),
        ],
        "notes": [
            f"{N} gate calls for one approved change (re-read with its joins each time), "
            "against a bare ChangeRequest primary-key read.",
        ],
    }  # fmt: skip
