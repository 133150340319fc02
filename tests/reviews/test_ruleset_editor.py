"""The admins' web editor for reviewer rule sets (issue 14, item 1): the version in force and
its history, add and remove rules, save as a new audited version, unsatisfiable sets refused
with the reason in the form, everyone else 403."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes.models import AuditEvent
from reviews import rules
from reviews.models import ReviewerRuleSet
from tests.factories import SystemFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def safety(db):
    team = TeamFactory(name="Safety")
    UserFactory(username="safety1", roles=["reviewer"], team=team)
    return team


@pytest.fixture
def system(team_a):
    return SystemFactory(owner_team=team_a, name="triage-bot")


def _row(i, *, kind="", name="", team="", users=(), count="1", remove=False) -> dict:
    data = {
        f"rule-{i}-name": name,
        f"rule-{i}-kind": kind,
        f"rule-{i}-team": str(team),
        f"rule-{i}-users": [str(u) for u in users],
        f"rule-{i}-count": str(count),
    }
    if remove:
        data[f"rule-{i}-remove"] = "on"
    return data


def _post(client, system, *rows, author_team_counts=True):
    data = {"rows": str(len(rows))}
    for row in rows:
        data.update(row)
    if author_team_counts:
        data["author_team_counts"] = "on"
    return client.post(reverse("ruleset-edit", args=[system.pk]), data)


def test_admin_adds_rules_saves_versions_and_removes_one(
    client, admin_user, system, safety, reviewer, reviewer2
):
    client.force_login(admin_user)
    url = reverse("ruleset-edit", args=[system.pk])
    page = client.get(url).content.decode()
    assert "No rule set yet" in page and "Never saved" in page

    # when: two rules are added (a team and named people), the author's team may not count
    response = _post(
        client,
        system,
        _row(0, kind="team", name="safety", team=safety.pk),
        _row(1, kind="users", name="leads", users=[reviewer.pk, reviewer2.pk], count=2),
        author_team_counts=False,
    )
    # then: version 1 is in force, audited once, and the page shows it in words
    assert response.status_code == 302
    v1 = rules.current(system.pk)
    assert v1.version == 1 and v1.author_team_counts is False
    assert v1.rules == [
        {"name": "safety", "kind": "team", "count": 1, "team": safety.pk},
        {
            "name": "leads",
            "kind": "users",
            "count": 2,
            "users": sorted([reviewer.pk, reviewer2.pk]),
        },
    ]
    event = AuditEvent.objects.get(verb="reviewer_rules.saved")
    assert event.actor == admin_user and event.data["version"] == 1
    page = client.get(url).content.decode()
    assert "Version 1, saved by admin" in page
    assert "1 approval(s) from team Safety" in page
    assert "2 approval(s) from reviewer, reviewer2" in page
    # the form comes back filled with the rules in force, plus blank rows to add more
    assert 'name="rule-0-name" id="rule-0-name" value="safety"' in page
    assert 'name="rows" value="4"' in page

    # when: the first rule is removed and an "any" rule added
    response = _post(
        client,
        system,
        _row(0, kind="team", name="safety", team=safety.pk, remove=True),
        _row(1, kind="users", name="leads", users=[reviewer.pk, reviewer2.pk], count=2),
        _row(2, kind="any", name="anyone", count=1),
        _row(3),  # a blank row stays out
    )
    assert response.status_code == 302
    v2 = rules.current(system.pk)
    assert v2.version == 2 and [r["name"] for r in v2.rules] == ["leads", "anyone"]
    assert AuditEvent.objects.filter(verb="reviewer_rules.saved").count() == 2
    # the history lists both versions, newest first; v1 is kept as it was
    page = client.get(url).content.decode()
    history = page.split('id="ruleset-history"')[1]
    assert history.index("v2") < history.index("v1")
    assert "1 approval(s) from team Safety" in history
    assert ReviewerRuleSet.objects.get(system=system, version=1).rules == v1.rules


def test_unsatisfiable_rule_set_is_refused_with_the_reason_in_the_form(
    client, admin_user, system, reviewer
):
    client.force_login(admin_user)
    nobody = TeamFactory(name="Nobody")
    response = _post(
        client,
        system,
        _row(0, kind="team", name="ghosts", team=nobody.pk),
        _row(1, kind="users", name="pair", users=[reviewer.pk], count=2),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="ruleset-error"' in page and "can never be met" in page
    assert "Rule &#x27;ghosts&#x27; needs 1 approval(s) from team Nobody, but only 0" in page
    assert "Rule &#x27;pair&#x27; needs 2 approval(s) from reviewer, but only 1" in page
    # the form keeps what was typed, and nothing was saved or audited
    assert 'value="ghosts"' in page and 'value="pair"' in page
    assert not ReviewerRuleSet.objects.exists()
    assert not AuditEvent.objects.filter(verb="reviewer_rules.saved").exists()


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (_row(0, kind="any", count="0"), "rules.1.count: a whole number from 1 to 10."),
        (_row(0, kind="any", count="many"), "rules.1.count: a whole number from 1 to 10."),
        (_row(0, kind="team", team=""), "rules.1.team: no such team."),
        (_row(0, kind="users"), "rules.1.users: a non-empty list of user ids."),
        (_row(0, kind="users", users=[999999]), "rules.1.users: unknown user id(s)."),
        (_row(0, kind="robots"), "rules.1.kind: must be one of team, users, any."),
    ],
)
def test_bad_rows_are_a_400_naming_the_field(client, admin_user, system, reviewer, row, reason):
    client.force_login(admin_user)
    response = _post(client, system, row)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not ReviewerRuleSet.objects.exists()


def test_admin_sees_every_system_and_its_version(client, admin_user, system, reviewer):
    rules.ruleset_save(actor=admin_user, system=system, rules=[{"kind": "any", "count": 1}])
    client.force_login(admin_user)
    page = client.get(reverse("ruleset-systems")).content.decode()
    assert "triage-bot" in page and "v1 (1 rule)" in page
    assert reverse("ruleset-edit", args=[system.pk]) in page
    # and the system's page links admins to its rules
    page = client.get(reverse("system-detail", args=[system.pk])).content.decode()
    assert reverse("ruleset-edit", args=[system.pk]) in page


@pytest.mark.parametrize("who", ["engineer", "reviewer", "auditor", "pipeline"])
def test_everyone_else_gets_403_and_cannot_save(request, client, system, who):
    user = request.getfixturevalue(who)
    client.force_login(user)
    assert client.get(reverse("ruleset-systems")).status_code == 403
    assert client.get(reverse("ruleset-edit", args=[system.pk])).status_code == 403
    response = _post(client, system, _row(0, kind="any", count=1))
    assert response.status_code == 403
    assert not ReviewerRuleSet.objects.exists()
    page = client.get(reverse("system-detail", args=[system.pk])).content.decode()
    assert reverse("ruleset-edit", args=[system.pk]) not in page


def test_anonymous_is_sent_to_login_and_unknown_system_is_404(client, admin_user, system):
    response = client.get(reverse("ruleset-edit", args=[system.pk]))
    assert response.status_code == 302 and "/login" in response["Location"]
    client.force_login(admin_user)
    assert client.get(reverse("ruleset-edit", args=[999999])).status_code == 404
    # a nonsense row count is treated as no rows: an empty (valid) rule set
    response = client.post(reverse("ruleset-edit", args=[system.pk]), {"rows": "lots"})
    assert response.status_code == 302 and rules.current(system.pk).rules == []
