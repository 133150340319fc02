"""Separation of duties, closed (issue 16 item 5): each red-team gap is a regression test.

- the author of the proposed (or base) protocol version approved the change;
- a deactivated reviewer's approval still counted, and a high-criticality change deployed;
- an author marked their change "emergency" and dropped 2 required approvals to 1;
- an admin gave itself the reviewer role, unrecorded in the hash-chained log;
- ``content_sha256`` was optional on ``POST /reviews/``.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from changes import audit, permissions, selectors, services
from changes.models import AuditEvent, ChangeRequest
from core.errors import Conflict, NotAllowed
from tests.changes.test_api_support import (
    approve,
    awaiting_review,
    pin_null_ports,
    url,
)
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, UserFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def _high_change(engineer, **overrides):
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="high")
    return make_change(author=engineer, system=system, **overrides)


# --- protocol authors ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["proposed_protocol", "base_protocol"])
def test_author_of_a_protocol_version_cannot_approve(api, engineer, reviewer, which):
    # given a change whose protocol version was written by the reviewer
    change = make_change(author=engineer)
    ProtocolFactory._meta.model.objects.filter(pk=getattr(change, f"{which}_id")).update(
        created_by=reviewer
    )
    change = awaiting_review(ChangeRequest.objects.get(pk=change.pk), engineer)
    # when they sign through the API
    response = api(reviewer).post(
        url("change-reviews", pk=change.pk),
        {"decision": "approve", "password": PASSWORD, "content_sha256": change.content_sha256},
        format="json",
    )
    # then they are refused, and the reason names the rule
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "not_independent"
    assert any("protocol version" in r for r in response.json()["reasons"])
    assert not change.reviews.exists()


def test_protocol_written_through_the_service_records_its_author(engineer, reviewer):
    # given a reviewer who also holds the engineer role and writes a protocol version
    reviewer.groups.add(Group.objects.get(name="engineer"))
    change = make_change(author=engineer)
    proposed = services.protocol_version_create(
        actor=reviewer, system=change.system, version="v-by-reviewer", body="", system_prompt="p"
    )
    services.change_request_update(
        actor=engineer, change_request=change, data={"proposed_protocol": proposed}
    )
    # then that reviewer is not independent of the change
    check = permissions.check_independence(reviewer, ChangeRequest.objects.get(pk=change.pk))
    assert not check.ok and not check.not_protocol_author


# --- approvals that stop counting ----------------------------------------------------------


def test_deactivated_reviewers_approval_stops_counting_and_gate_says_so(
    engineer, reviewer, reviewer2
):
    # given a high-criticality change approved by two independent reviewers
    change = awaiting_review(_high_change(engineer), engineer)
    change = approve(approve(change, reviewer), reviewer2)
    assert change.state == "approved", selectors.gate(change)
    assert selectors.gate(change)["approvals"] == 2
    # when one reviewer is deactivated
    reviewer2.is_active = False
    reviewer2.save()
    change.refresh_from_db()
    # then the gate closes and says why, in words
    gate = selectors.gate(change)
    assert not gate["deployable"] and gate["approvals"] == 1
    assert any("reviewer2" in r and "deactivated" in r for r in gate["reasons"])
    # and the deploy is refused with the same reasons
    with pytest.raises(Conflict) as refused:
        services.change_request_deploy(actor=engineer, change_request=change)
    assert any("deactivated" in r for r in refused.value.reasons)


def test_reviewer_who_lost_the_role_stops_counting(engineer, reviewer, reviewer2):
    change = awaiting_review(_high_change(engineer), engineer)
    change = approve(approve(change, reviewer), reviewer2)
    reviewer.groups.remove(Group.objects.get(name="reviewer"))
    change.refresh_from_db()
    gate = selectors.gate(change)
    assert not gate["deployable"]
    assert any("reviewer" in r and "no longer hold the reviewer role" in r for r in gate["reasons"])


def test_deactivated_reviewer_cannot_sign(engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    reviewer.is_active = False
    reviewer.save()
    with pytest.raises(NotAllowed) as refused:
        services.review_submit(
            actor=reviewer, change_request=change, decision="approve", password=PASSWORD
        )
    assert "deactivated" in " ".join(refused.value.reasons)


# --- emergencies -----------------------------------------------------------------------------


def test_author_declared_emergency_does_not_lower_the_count(engineer, reviewer):
    # given a high-criticality change its author marked "emergency"
    change = awaiting_review(_high_change(engineer, change_type="emergency"), engineer)
    # when one independent reviewer approves
    change = approve(change, reviewer)
    # then it still needs the normal two, and the gate says the emergency is unconfirmed
    assert permissions.required_approvals(change) == 2
    assert change.state == "awaiting_review"
    reasons = selectors.gate(change)["reasons"]
    assert any("emergency has not been confirmed" in r for r in reasons)


@pytest.mark.parametrize("who", ["engineer", "engineer2", "admin_user", "team_a_reviewer"])
def test_only_an_independent_reviewer_confirms_an_emergency(request, engineer, who):
    # given an emergency change on a high-criticality system
    change = awaiting_review(_high_change(engineer, change_type="emergency"), engineer)
    actor = request.getfixturevalue(who)
    # when its author, a teammate, an admin without the role or a same-team reviewer confirms
    with pytest.raises(NotAllowed):
        services.change_request_confirm_emergency(actor=actor, change_request=change)
    # then nothing is lowered (admins get no bypass)
    change.refresh_from_db()
    assert not change.emergency_confirmed and permissions.required_approvals(change) == 2


def test_confirmed_emergency_goes_to_the_criticality_minimum_and_an_edit_voids_it(
    api, engineer, reviewer, reviewer2
):
    change = awaiting_review(_high_change(engineer, change_type="emergency"), engineer)
    # when an independent reviewer confirms through the API
    response = api(reviewer2).post(url("change-emergency-confirm", pk=change.pk), format="json")
    assert response.status_code == 200, response.content
    change.refresh_from_db()
    # then one approval (the high-criticality emergency minimum) suffices, and it is audited
    assert permissions.required_approvals(change) == 1
    assert AuditEvent.objects.filter(verb="change.emergency_confirmed").count() == 1
    # and an edit voids the confirmation with the content it was given for
    services.change_request_update(actor=engineer, change_request=change, data={"title": "New"})
    change.refresh_from_db()
    assert not change.emergency_confirmed and permissions.required_approvals(change) == 2


def test_critical_emergency_never_drops_below_two(engineer, reviewer):
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="critical")
    change = make_change(author=engineer, system=system, change_type="emergency")
    change = awaiting_review(change, engineer)
    services.change_request_confirm_emergency(actor=reviewer, change_request=change)
    change.refresh_from_db()
    assert change.emergency_confirmed and permissions.required_approvals(change) == 2


def test_confirming_a_normal_change_is_409(engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    with pytest.raises(Conflict):
        services.change_request_confirm_emergency(actor=reviewer, change_request=change)


# --- role and team changes are audited ---------------------------------------------------------


def _events(verb):
    return list(AuditEvent.objects.filter(verb=verb).order_by("id"))


def test_role_grant_and_revoke_are_chained_audit_events(client, admin_user, engineer):
    # given an admin who gives a user the reviewer role through the Django admin form
    reviewer_group = Group.objects.get(name="reviewer")
    engineer_group = Group.objects.get(name="engineer")
    client.force_login(admin_user)
    before = len(_events("role.granted"))
    response = client.post(
        f"/admin/auth/user/{engineer.pk}/change/",
        {
            "username": engineer.username,
            "is_active": "on",
            "groups": [reviewer_group.pk, engineer_group.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    # then the grant is an event with the acting admin, and the chain verifies
    granted = _events("role.granted")[before:]
    assert [(e.data["user"], e.data["role"], e.actor_username) for e in granted] == [
        ("engineer", "reviewer", "admin")
    ]
    # and revoking, from either side of the relation, is recorded too
    reviewer_group.user_set.remove(engineer)
    engineer.groups.clear()
    revoked = [(e.data["user"], e.data["role"]) for e in _events("role.revoked")]
    assert ("engineer", "reviewer") in revoked and ("engineer", "engineer") in revoked
    assert audit.verify_chain()[1] is None


def test_admin_granting_itself_the_reviewer_role_is_recorded(admin_user):
    admin_user.groups.add(Group.objects.get(name="reviewer"))
    events = _events("role.granted")
    assert events and events[-1].data == {
        "user": "admin",
        "role": "reviewer",
        "group_id": Group.objects.get(name="reviewer").pk,
    }


def test_team_membership_changes_are_audited(team_a, team_b, engineer):
    team_b.members.add(engineer)
    engineer.teams.remove(team_a)
    added = [(e.data["user"], e.data["team"]) for e in _events("team.member_added")]
    removed = [(e.data["user"], e.data["team"]) for e in _events("team.member_removed")]
    assert ("engineer", "Team B") in added
    assert ("engineer", "Team A") in removed


def test_deactivation_and_superuser_flags_are_audited(reviewer):
    reviewer.is_active = False
    reviewer.is_superuser = True
    reviewer.save()
    event = _events("user.flags_changed")[-1]
    assert event.data["changed"] == {
        "is_active": {"from": True, "to": False},
        "is_superuser": {"from": False, "to": True},
    }


def test_a_login_does_not_write_a_flag_event(client, reviewer):
    before = len(_events("user.flags_changed"))
    client.force_login(reviewer)  # updates last_login, as every login does
    assert len(_events("user.flags_changed")) == before


def test_new_superuser_is_audited(db):
    UserFactory(username="root2", is_superuser=True, is_staff=True)
    event = _events("user.flags_changed")[-1]
    assert event.data["user"] == "root2" and "is_superuser" in event.data["changed"]
