"""The gate's rules share their reads for one gate computation (``changes.gate_context``):
the approvals, the current evaluation runs and the linked suites are read once however many
rules ask, and nothing is reused by the next gate call."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from changes import gate_context, selectors, services
from changes.models import ChangeRequest
from reviews import rules
from tests.changes.env_support import approve, system_with
from tests.factories import PASSWORD, UserFactory, change_fields

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def _fresh(change) -> ChangeRequest:
    return ChangeRequest.objects.select_related(
        "system", "base_protocol", "proposed_protocol", "author"
    ).get(pk=change.pk)


def _reads(ctx, table: str) -> int:
    return sum(
        1
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    )


@pytest.fixture
def ruled_change(team_a, team_b, engineer, reviewer, admin_user):
    system, v = system_with(team_a, "v1", "v2")
    UserFactory(username="second-reviewer", roles=["reviewer"], team=team_b)
    rules.ruleset_save(
        actor=admin_user, system=system, rules=[{"name": "two", "kind": "any", "count": 2}]
    )
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    return approve(change, engineer, reviewer)


def test_rules_read_approvals_and_runs_once_per_gate(ruled_change, engineer):
    fresh = _fresh(ruled_change)
    with CaptureQueriesContext(connection) as ctx:
        gate = selectors.gate(fresh, user=engineer)
    # the reviewer rule counted the approvals it was handed: it is unmet, not skipped
    assert any("Reviewer rule 'two'" in r for r in gate["reasons"]), gate["reasons"]
    assert gate["approvals"] == 1
    assert _reads(ctx, "changes_review") == 1
    # where the change is deployed is read with the environments, not on its own
    assert not [
        q for q in ctx.captured_queries if q["sql"].startswith('SELECT "changes_deployment"')
    ]
    assert not gate_context.active(fresh)  # the scope ends with the call


def test_nothing_is_reused_by_the_next_gate_call(ruled_change, engineer):
    fresh = _fresh(ruled_change)
    first = selectors.gate(fresh, user=engineer)
    services.review_submit(
        actor=UserFactory._meta.model.objects.get(username="second-reviewer"),
        change_request=fresh, decision="approve", password=PASSWORD,
    )  # fmt: skip
    second = selectors.gate(fresh, user=engineer)  # same instance, new computation
    assert first["approvals"] == 1 and second["approvals"] == 2
    assert not any("Reviewer rule" in r for r in second["reasons"]), second["reasons"]


def test_memo_outside_a_scope_computes_every_time():
    class Obj:
        pass

    obj, calls = Obj(), []
    assert gate_context.memo(obj, "k", lambda: calls.append(1) or len(calls)) == 1
    assert gate_context.memo(obj, "k", lambda: calls.append(1) or len(calls)) == 2
    with gate_context.computing(obj):
        assert gate_context.memo(obj, "k", lambda: calls.append(1) or len(calls)) == 3
        assert gate_context.memo(obj, "k", lambda: calls.append(1) or len(calls)) == 3
        with gate_context.computing(obj):  # a nested scope joins the outer one
            assert gate_context.memo(obj, "k", lambda: 99) == 3
        assert gate_context.active(obj)
    assert not gate_context.active(obj)


def test_change_page_status_reads_approvals_once_for_every_environment(ruled_change):
    from changes import env_selectors

    fresh = _fresh(ruled_change)
    with CaptureQueriesContext(connection) as ctx:
        status = env_selectors.change_status(fresh)
    assert len(status) >= 2  # the rules ran per environment ...
    assert _reads(ctx, "changes_review") == 1  # ... on one read of the approvals
    assert not gate_context.active(fresh)
