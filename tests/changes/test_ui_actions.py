"""The change page's action buttons: small POST views that call one service each.

A refusal is shown as a message with its reason (never a 500) and changes nothing.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from changes import states
from changes.models import AuditEvent, ChangeRequest, Deployment
from tests.changes.test_ui_pages import change_in_state, login

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def post(client, name, change, data=None):
    return client.post(reverse(name, args=[change.pk]), data or {}, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_buttons_match_the_user_and_state(client, engineer, reviewer):
    # given a draft: the author may submit, edit and withdraw it
    draft = change_in_state(engineer, states.DRAFT)
    login(client, engineer)
    html = client.get(reverse("change-detail", args=[draft.pk])).content.decode()
    assert reverse("change-submit", args=[draft.pk]) in html
    assert reverse("change-edit", args=[draft.pk]) in html
    assert reverse("change-withdraw", args=[draft.pk]) in html
    assert reverse("change-deploy", args=[draft.pk]) not in html
    # given a change awaiting review: a reviewer gets "Review and sign", not edit or submit
    waiting = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    html = client.get(reverse("change-detail", args=[waiting.pk])).content.decode()
    assert reverse("change-review", args=[waiting.pk]) in html
    assert reverse("change-submit", args=[waiting.pk]) not in html
    assert reverse("change-edit", args=[waiting.pk]) not in html
    assert reverse("change-withdraw", args=[waiting.pk]) not in html


def test_author_submits_from_the_change_page(client, engineer):
    # given a draft
    change = change_in_state(engineer, states.DRAFT)
    login(client, engineer)
    # when the author presses Submit
    response = post(client, "change-submit", change)
    # then it is evaluating, with a confirmation
    change.refresh_from_db()
    assert response.status_code == 200
    assert change.state == states.EVALUATING
    assert any("submitted" in m for m in messages_of(response))


def test_someone_else_cannot_submit_and_nothing_changes(client, engineer, engineer2):
    # given a draft by engineer, seen by a teammate
    change = change_in_state(engineer, states.DRAFT)
    events = AuditEvent.objects.filter(object_id=str(change.pk)).count()
    login(client, engineer2)
    # when the teammate presses Submit
    response = post(client, "change-submit", change)
    # then the refusal is a message with its reason, and the change is untouched
    assert response.status_code == 200
    assert "Only the author submits a change." in messages_of(response)
    fresh = ChangeRequest.objects.get(pk=change.pk)
    assert fresh.state == states.DRAFT and fresh.submitted_at is None
    assert AuditEvent.objects.filter(object_id=str(change.pk)).count() == events
    assert AuditEvent.objects.filter(verb="permission.denied").exists()


def test_invalid_transition_is_a_message_not_a_500(client, engineer):
    # given a change already evaluating
    change = change_in_state(engineer, states.EVALUATING)
    login(client, engineer)
    # when it is submitted again
    response = post(client, "change-submit", change)
    # then the state machine's refusal is shown
    assert response.status_code == 200
    assert any("cannot move to" in m for m in messages_of(response))
    assert ChangeRequest.objects.get(pk=change.pk).state == states.EVALUATING


def test_withdraw_with_a_reason(client, engineer):
    change = change_in_state(engineer, states.DRAFT)
    login(client, engineer)
    post(client, "change-withdraw", change, {"reason": "Superseded by CR-9"})
    change.refresh_from_db()
    assert change.state == states.WITHDRAWN
    event = AuditEvent.objects.get(verb="change.withdrawn", object_id=str(change.pk))
    assert event.data["reason"] == "Superseded by CR-9"


def test_deploy_refused_while_the_gate_is_closed(client, engineer, reviewer):
    # given a change awaiting review (no approval yet)
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, engineer)
    # when deploy is forced by a POST
    response = post(client, "change-deploy", change, {"environment": "production"})
    # then the gate's reasons are shown and nothing is deployed
    msgs = messages_of(response)
    assert "The deploy gate is closed." in msgs
    assert any("only approved changes can be deployed" in m for m in msgs)
    assert not Deployment.objects.exists()
    assert ChangeRequest.objects.get(pk=change.pk).state == states.AWAITING_REVIEW


def test_deploy_and_close_an_approved_change(client, engineer, reviewer):
    # given an approved change with its independent approval
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, engineer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert "Deployable" in page and reverse("change-deploy", args=[change.pk]) in page
    # when the engineer deploys it
    response = post(client, "change-deploy", change, {"environment": "production"})
    # then it is deployed, once
    change.refresh_from_db()
    assert change.state == states.DEPLOYED
    assert Deployment.objects.filter(change=change, environment="production").count() == 1
    assert "deployed to production" in " ".join(messages_of(response))
    # when the author closes it
    post(client, "change-close", change)
    change.refresh_from_db()
    assert change.state == states.CLOSED


def test_deploy_needs_an_environment(client, engineer, reviewer):
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, engineer)
    response = post(client, "change-deploy", change, {"environment": ""})
    assert any("environment" in m for m in messages_of(response))
    assert ChangeRequest.objects.get(pk=change.pk).state == states.APPROVED


def test_actions_on_invisible_changes_are_404(client, engineer, reviewer, outsider):
    change = change_in_state(engineer, states.DRAFT)
    login(client, reviewer)  # reviewers do not see drafts
    for name in ("change-submit", "change-withdraw", "change-close", "change-deploy"):
        assert client.post(reverse(name, args=[change.pk])).status_code == 404, name
    assert ChangeRequest.objects.get(pk=change.pk).state == states.DRAFT


def test_actions_are_post_only(client, engineer):
    change = change_in_state(engineer, states.DRAFT)
    login(client, engineer)
    for name in ("change-submit", "change-withdraw", "change-close", "change-deploy"):
        assert client.get(reverse(name, args=[change.pk])).status_code == 405, name


def test_action_without_csrf_token_is_refused(engineer):
    # given a browser session without the CSRF token
    change = change_in_state(engineer, states.DRAFT)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(engineer)
    # when a forged submit arrives
    response = browser.post(reverse("change-submit", args=[change.pk]))
    # then it is refused and nothing moved
    assert response.status_code == 403
    assert ChangeRequest.objects.get(pk=change.pk).state == states.DRAFT


def test_every_post_form_carries_a_csrf_token(client, engineer):
    change = change_in_state(engineer, states.DRAFT)
    login(client, engineer)
    html = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert html.count('method="post"') == html.count('name="csrfmiddlewaretoken"')
    assert html.count('method="post"') >= 3  # submit, withdraw, logout


def test_auditor_verifies_the_chain(client, auditor, engineer):
    # given some history
    change_in_state(engineer, states.EVALUATING)
    login(client, auditor)
    # when the auditor presses "Verify chain"
    response = client.post(reverse("audit-verify"), follow=True)
    # then the result is shown
    assert any("The audit chain is intact" in m for m in messages_of(response))


def test_audit_log_filters_and_export_links(client, auditor, engineer):
    change = change_in_state(engineer, states.EVALUATING)
    login(client, auditor)
    url = reverse("audit-log")
    html = client.get(f"{url}?verb=change.&object_id={change.pk}").content.decode()
    assert "change.submitted" in html and "auth.login" not in html
    assert "/api/v1/audit/events/?format=jsonl" in html
    assert "/api/v1/audit/events/?format=csv" in html
    assert "verb=change." in html  # exports carry the filters
    by_actor = client.get(f"{url}?actor=nobody").content.decode()
    assert "No event matches these filters." in by_actor
    today = change.created_at.date().isoformat()
    dated = client.get(f"{url}?since={today}&until={today}&object_type=changes.changerequest")
    assert "change.created" in dated.content.decode()
    assert client.get(f"{url}?since=not-a-date").status_code == 200


def test_non_auditor_cannot_verify(client, engineer):
    login(client, engineer)
    assert client.post(reverse("audit-verify")).status_code == 403
