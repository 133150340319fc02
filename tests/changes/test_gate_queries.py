"""The gate's query count does not grow with the number of approvals: the reviewers'
standing (role, editor, author's team) is read in one statement for all of them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from changes import selectors, services
from changes.models import ChangeRequest
from tests.changes.env_support import approve, system_with
from tests.factories import PASSWORD, UserFactory, change_fields

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def _gate_queries(change, user) -> int:
    fresh = ChangeRequest.objects.select_related(
        "system", "base_protocol", "proposed_protocol", "author"
    ).get(pk=change.pk)
    selectors.gate(fresh, user=user)  # warm per-user caches
    fresh = ChangeRequest.objects.select_related(
        "system", "base_protocol", "proposed_protocol", "author"
    ).get(pk=change.pk)
    with CaptureQueriesContext(connection) as ctx:
        gate = selectors.gate(fresh, user=user)
    return len(ctx.captured_queries), gate


def test_gate_queries_do_not_grow_with_approvals(team_a, team_b, engineer, reviewer):
    system, v = system_with(team_a, "v1", "v2", "v3")
    one = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    approve(one, engineer, reviewer)
    three = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v3"],
        **change_fields(),
    )  # fmt: skip
    more = [UserFactory(username=f"rev{i}", roles=["reviewer"], team=team_b) for i in range(2)]
    approve(three, engineer, reviewer)
    for person in more:
        services.review_submit(
            actor=person, change_request=three, decision="approve", password=PASSWORD
        )
    q_one, gate_one = _gate_queries(one, engineer)
    q_three, gate_three = _gate_queries(three, engineer)
    assert gate_one["approvals"] == 1 and gate_three["approvals"] == 3
    # 8 before the deployments were read with the environments
    assert q_one == q_three <= 7, (q_one, q_three)


def test_standing_read_in_one_statement_still_refuses_a_de_roled_reviewer(
    team_a, engineer, reviewer
):
    from django.contrib.auth.models import Group

    system, v = system_with(team_a, "v1", "v2")
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    approve(change, engineer, reviewer)
    reviewer.groups.remove(Group.objects.get(name="reviewer"))
    change.refresh_from_db()
    (standing,) = selectors.approvals_with_standing(change)
    assert standing[1] == ["they no longer hold the reviewer role"]
    team_a.members.add(reviewer)  # and joining the author's team on a cross-team system
    system.criticality = "high"
    system.save(update_fields=["criticality"])
    change = ChangeRequest.objects.select_related("system").get(pk=change.pk)
    (standing,) = selectors.approvals_with_standing(change)
    assert "they are on the author's team" in standing[1]
