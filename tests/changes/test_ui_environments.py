"""The environment pages: the registry and timeline on the system page, per-environment status
and conflicts on the change page, rollback in one click, and rebase through a merge editor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import env_services, services, states
from changes.models import ChangeRequest
from tests.changes.env_support import approved, new_version, system_with
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def html_of(client, name, pk, status=200):
    response = client.get(reverse(name, kwargs={"pk": pk}))
    assert response.status_code == status
    return response.content.decode()


def test_system_page_shows_what_is_live_where_and_the_timeline(client, team_a, engineer, reviewer):
    system, v = system_with(team_a, "v1", "v2")
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    client.force_login(reviewer)
    html = html_of(client, "system-detail", system.pk)
    assert 'id="env-registry"' in html and 'id="env-timeline"' in html
    assert '<span class="mono">staging</span>: <span class="mono">nothing</span> → ' in html
    assert f">{change.reference}</a> by engineer" in html
    registry = html[html.index('id="env-registry"') : html.index('id="env-timeline"')]
    assert registry.count("nothing deployed") == 1  # production still runs nothing


def test_change_page_shows_per_environment_status_and_other_open_changes(
    client, team_a, engineer, reviewer
):
    system, v = system_with(team_a, "v1", "v2", "v3")
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    other = approved(engineer, reviewer, system, v["v1"], v["v3"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    client.force_login(engineer)
    html = html_of(client, "change-detail", change.pk)
    assert (
        '<strong class="mono">staging</strong>:\n      <span class="tag tag-ok">deployed</span>'
        in html
    )
    assert 'id="open-changes"' in html and other.reference in html
    # the gate card is still open for production, not "deployed"
    assert "gate-deployed" not in html
    other_html = html_of(client, "change-detail", other.pk)
    assert "staging now runs v2" in other_html and 'id="rebase-link"' in other_html


def test_rollback_button_files_the_rollback(client, team_a, engineer, reviewer):
    system, v = system_with(team_a, "v1", "v2")
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    client.force_login(engineer)
    assert 'id="rollback-button"' in html_of(client, "change-detail", change.pk)
    response = client.post(reverse("change-rollback", kwargs={"pk": change.pk}))
    rollback = ChangeRequest.objects.get(rollback_of=change)
    assert response.status_code == 302 and response.url == reverse(
        "change-detail", kwargs={"pk": rollback.pk}
    )
    assert (rollback.base_protocol, rollback.proposed_protocol) == (v["v2"], v["v1"])
    assert "rollback</span> of" in html_of(client, "change-detail", rollback.pk)


def test_rebase_through_the_ui_resolving_a_conflict(client, team_a, engineer, reviewer):
    system, _ = system_with(team_a)
    base = new_version(system, "v1", "Be brief.\n")
    theirs = new_version(system, "v2", "Be brief and polite.\n")
    ours = new_version(system, "v3", "Be brief and cite sources.\n")
    first = approved(engineer, reviewer, system, base, theirs)
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    stale = approved(engineer, reviewer, system, base, ours)
    client.force_login(engineer)
    html = html_of(client, "change-rebase", stale.pk)
    assert 'id="rebase-conflicts"' in html and "&lt;&lt;&lt;&lt;&lt;&lt;&lt; this change" in html
    url = reverse("change-rebase", kwargs={"pk": stale.pk})
    still = client.post(
        url, {"system_prompt": "<<<<<<< this change\nx\n=======\ny\n>>>>>>> live\n"}
    )
    assert still.status_code == 409 and 'id="rebase-error"' in still.content.decode()
    done = client.post(url, {"system_prompt": "Be brief, polite, cite sources.\r\n", "body": ""})
    assert done.status_code == 302
    stale.refresh_from_db()
    assert stale.base_protocol == theirs and stale.state == states.DRAFT
    assert stale.proposed_protocol.system_prompt == "Be brief, polite, cite sources.\n"


def test_rebase_page_for_a_change_that_is_not_stale_says_why(client, team_a, engineer, reviewer):
    system, v = system_with(team_a, "v1", "v2")
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    client.force_login(engineer)
    response = client.get(reverse("change-rebase", kwargs={"pk": change.pk}), follow=True)
    assert "is not stale" in response.content.decode()


def test_deploy_confirmation_judges_the_chosen_environment(
    client, team_a, engineer, reviewer, admin_user
):
    system, v = system_with(team_a, "v1", "v2")
    env_services.environment_save(
        actor=admin_user, system=system, name="production", requires_previous=True
    )
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    client.force_login(engineer)
    confirm = reverse("change-deploy-confirm", kwargs={"pk": change.pk})
    prod = client.get(confirm, {"environment": "production"}).content.decode()
    assert "deploy to staging first" in prod
    staging = client.get(confirm, {"environment": "staging"}).content.decode()
    assert "Deploy v2 to staging</button>" in staging


def test_deploy_in_a_blackout_through_the_ui_uses_the_override(
    client, team_a, engineer, reviewer, reviewer2, admin_user
):
    system, v = system_with(team_a, "v1", "v2")
    env_services.environment_save(
        actor=admin_user, system=system, name="production",
        blackout_windows=[{"start": "mon 00:00", "end": "sun 23:59"}],
    )  # fmt: skip
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.review_submit(
        actor=reviewer2, change_request=change, decision="approve", password=PASSWORD
    )
    client.force_login(engineer)
    confirm = reverse("change-deploy-confirm", kwargs={"pk": change.pk})
    closed = client.get(confirm, {"environment": "production"}).content.decode()
    assert "blackout window" in closed and 'id="override-link"' in closed
    opened = client.get(confirm, {"environment": "production", "blackout_override": "on"})
    assert 'id="override-note"' in opened.content.decode()
    client.post(
        reverse("change-deploy", kwargs={"pk": change.pk}),
        {"environment": "production", "blackout_override": "on"},
    )
    deployment = change.deployments.get()
    assert deployment.blackout_override is True


def test_a_change_awaiting_review_offers_the_deploy_to_staging_under_its_override(
    client, team_a, engineer, reviewer, admin_user
):
    system, v = system_with(team_a, "v1", "v2", criticality="high")
    env_services.environment_save(
        actor=admin_user, system=system, name="staging", required_approvals=1
    )
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    assert change.state == states.AWAITING_REVIEW
    client.force_login(engineer)
    html = html_of(client, "change-detail", change.pk)
    assert 'class="inline deploy-form"' in html and "Deploy…</button>" in html
    assert 'disabled title="The deploy gate is closed"' not in html
