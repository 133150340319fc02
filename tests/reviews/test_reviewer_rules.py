"""Reviewer rules per system: the gate opens exactly when each rule kind is met, admins get
no bypass, unsatisfiable rule sets are refused at save, every save is a new audited version."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import hooks, selectors, services
from changes.models import AuditEvent
from core.errors import NotAllowed
from reviews import rules
from reviews.models import ReviewerRuleSet
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import awaiting_review
from tests.factories import PASSWORD, SystemFactory, TeamFactory, UserFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _passing(monkeypatch):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())


@pytest.fixture
def safety(db):
    team = TeamFactory(name="Safety")
    UserFactory(username="safety1", roles=["reviewer"], team=team)
    return team


def _approve(change, user):
    services.review_submit(actor=user, change_request=change, decision="approve", password=PASSWORD)
    change.refresh_from_db()


def _rule_reasons(change):
    return [r for r in selectors.gate_reasons(change) if r.startswith("Reviewer rule")]


def _change(engineer, team_a, **system):
    system = SystemFactory(owner_team=team_a, **system)
    return awaiting_review(make_change(author=engineer, system=system), engineer)


@pytest.mark.parametrize("kind", ["team", "users", "any", "author_team_excluded"])
def test_the_gate_opens_exactly_when_the_rule_is_met(
    kind, admin_user, engineer, team_a, reviewer, reviewer2, team_a_reviewer, safety
):
    # given: a medium system of team A (1 approval by default) and one rule of this kind
    change = _change(engineer, team_a)
    rule, not_enough, enough = {
        "team": ({"kind": "team", "team": safety.pk, "count": 1}, ["reviewer"], ["safety1"]),
        "users": (
            {"kind": "users", "users": [reviewer2.pk], "count": 1},
            ["reviewer"],
            ["reviewer2"],
        ),
        "any": ({"kind": "any", "count": 2}, ["reviewer"], ["reviewer2"]),
        "author_team_excluded": ({"kind": "any", "count": 1}, ["areviewer"], ["reviewer"]),
    }[kind]
    rules.ruleset_save(
        actor=admin_user,
        system=change.system,
        rules=[{"name": kind, **rule}],
        author_team_counts=kind != "author_team_excluded",
    )
    # and an admin who is also a reviewer, on no team: no bypass
    boss = UserFactory(username="boss", roles=["admin", "reviewer"], is_superuser=True)
    from django.contrib.auth import get_user_model

    users = {u.username: u for u in get_user_model().objects.all()}

    # when: approvals that do not meet the rule (plus the admin's)
    for name in not_enough:
        _approve(change, users[name])
    if kind in ("team", "users"):  # an admin is not on the team nor in the list
        _approve(change, boss)
    # then: the gate names the rule, and the deploy is refused
    assert change.state == "approved"
    reasons = _rule_reasons(change)
    assert len(reasons) == 1 and f"'{kind}'" in reasons[0]
    with pytest.raises(Exception, match="gate is closed"):
        services.change_request_deploy(actor=engineer, change_request=change)

    # when: the approval that meets it
    for name in enough:
        _approve(change, users[name])
    # then: the gate opens
    assert selectors.gate_reasons(change) == []
    services.change_request_deploy(actor=engineer, change_request=change)


def test_every_unmet_rule_is_named(admin_user, engineer, team_a, reviewer, reviewer2, safety):
    change = _change(engineer, team_a)
    rules.ruleset_save(
        actor=admin_user,
        system=change.system,
        rules=[
            {"name": "safety", "kind": "team", "team": safety.pk, "count": 1},
            {"name": "two", "kind": "any", "count": 2},
        ],
    )
    reasons = _rule_reasons(change)
    assert [r.split("'")[1] for r in reasons] == ["safety", "two"]
    assert "0 of 1 approval(s) from team Safety" in reasons[0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"rules": [{"kind": "team", "team": "EMPTY", "count": 1}]}, "only 0 eligible"),
        ({"rules": [{"kind": "users", "users": ["R"], "count": 2}]}, "only 1 eligible"),
        (
            {"rules": [{"kind": "team", "team": "A", "count": 1}], "author_team_counts": False},
            "only 0 eligible",
        ),
        ({"rules": [{"kind": "any", "count": 0}]}, "count"),
        ({"rules": [{"kind": "nope"}]}, "kind"),
        ({"rules": [{"kind": "team", "team": 999999}]}, "no such team"),
        ({"rules": [{"kind": "users", "users": [999999]}]}, "unknown user"),
        ({"rules": "x"}, "list"),
        ({"rules": [], "author_team_counts": "no"}, "author_team_counts"),
    ],
)
def test_bad_and_unsatisfiable_rule_sets_are_refused_with_the_reason(
    api, admin_user, engineer, team_a, team_a_reviewer, reviewer, body, reason
):
    system = SystemFactory(owner_team=team_a)
    empty = TeamFactory(name="Nobody")
    for rule in body["rules"] if isinstance(body["rules"], list) else []:
        if rule.get("team") == "EMPTY":
            rule["team"] = empty.pk
        if rule.get("team") == "A":
            rule["team"] = team_a.pk
        if rule.get("users") == ["R"]:
            rule["users"] = [reviewer.pk]
    response = api(admin_user).put(
        reverse("api-reviewer-rules", kwargs={"pk": system.pk}), body, format="json"
    )
    assert response.status_code == 400, response.content
    assert reason in response.json()["detail"]
    assert not ReviewerRuleSet.objects.exists()
    assert not AuditEvent.objects.filter(verb="reviewer_rules.saved").exists()


def test_rule_sets_are_versioned_audited_and_admin_only(api, admin_user, engineer, team_a):
    system = SystemFactory(owner_team=team_a)
    url = reverse("api-reviewer-rules", kwargs={"pk": system.pk})
    body = {"rules": [{"name": "one", "kind": "any", "count": 1}]}
    UserFactory(username="r1", roles=["reviewer"])
    assert api(engineer).put(url, body, format="json").status_code == 403
    with pytest.raises(NotAllowed):
        rules.ruleset_save(actor=engineer, system=system, rules=[])
    assert api(admin_user).put(url, body, format="json").json()["version"] == 1
    body["rules"][0]["name"] = "renamed"
    assert api(admin_user).put(url, body, format="json").json()["version"] == 2
    shown = api(engineer).get(url).json()
    assert shown["current"]["rules"][0]["name"] == "renamed"
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert AuditEvent.objects.filter(verb="reviewer_rules.saved").count() == 2


def test_people_named_by_a_rule_are_asked_automatically_when_review_opens(
    admin_user, engineer, team_a, reviewer, reviewer2, committed
):
    from reviews import services as review_services
    from reviews.models import Notification, ReviewRequest
    from tests.changes.test_api_support import pass_evaluation, submit

    system = SystemFactory(owner_team=team_a)
    rules.ruleset_save(
        actor=admin_user,
        system=system,
        rules=[{"name": "owners", "kind": "users", "users": [reviewer2.pk], "count": 1}],
    )
    change = submit(make_change(author=engineer, system=system), engineer)
    with committed():
        pass_evaluation(change)
    asked = ReviewRequest.objects.get()
    assert asked.reviewer == reviewer2 and asked.requested_by == engineer
    note = Notification.objects.get(kind="review.requested")
    assert note.recipient == reviewer2 and note.title.startswith("The reviewer rules of")
    # a second fan-out of the same event asks nobody again
    event = AuditEvent.objects.filter(verb="change.evaluation_passed").latest("id")
    with committed():
        review_services.fan_out(event_id=event.pk)
    assert ReviewRequest.objects.get().times == 1
