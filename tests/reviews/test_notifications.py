"""Notifications: inbox rows and e-mails for workflow events, on commit, once per person.

E-mails go through Django's locmem backend here (pytest-django installs it).
"""

from __future__ import annotations

import smtplib

import pytest
from django.core import mail
from django.urls import reverse

from changes import audit, hooks, services
from changes.models import AuditEvent
from reviews import services as review_services
from reviews.models import Notification
from reviews.tasks import send_notification_email
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import approve, awaiting_review, pass_evaluation, submit
from tests.changes.xss_payloads import XSS_PAYLOADS
from tests.factories import PASSWORD, make_change

pytestmark = pytest.mark.django_db


def _request_changes(change, reviewer, comment="Tighten the test plan."):
    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision="request_changes",
        comment=comment,
        password=PASSWORD,
    )


def test_review_given_reaches_the_author_after_commit_by_inbox_and_email(
    engineer, reviewer, committed, django_capture_on_commit_callbacks
):
    # given: a change awaiting review
    change = awaiting_review(make_change(author=engineer), engineer)
    mail.outbox.clear()

    # when: the reviewer requests changes, but the transaction's callbacks have not run
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _request_changes(change, reviewer)
    # then: nothing was sent inside the request, only scheduled
    assert Notification.objects.count() == 0 and mail.outbox == []
    assert callbacks

    # when: the callbacks run (commit), the fan-out task runs
    for callback in callbacks:
        with committed():
            callback()

    # then: one inbox row and one e-mail for the author, none for the reviewer
    note = Notification.objects.get()
    assert note.recipient == engineer and note.kind == "review.given"
    assert "requested changes" in note.title and change.reference in note.title
    assert note.email_state == "sent"
    assert [m.to for m in mail.outbox] == [[engineer.email]]
    assert change.reference in mail.outbox[0].subject


def test_a_second_fan_out_of_the_same_event_sends_nothing(engineer, reviewer, committed):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        _request_changes(change, reviewer)
    event = AuditEvent.objects.get(verb="change.changes_requested")
    assert len(mail.outbox) == 1

    # when: the same event fans out again (a redelivered wake-up) and the e-mail task re-runs
    with committed():
        again = review_services.fan_out(event_id=event.pk)
    state = review_services.notification_send_email(notification_id=Notification.objects.get().pk)

    # then: no new row, no second e-mail
    assert again == [] and state == "skipped"
    assert Notification.objects.count() == 1 and len(mail.outbox) == 1


def test_email_is_retried_after_a_transient_failure_and_sent_once(
    engineer, reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    change = awaiting_review(make_change(author=engineer), engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _request_changes(change, reviewer)
    for callback in callbacks:
        callback()  # the wake-up goes to the (absent) broker; the fan-out runs below
    review_services.fan_out(event_id=AuditEvent.objects.get(verb="change.changes_requested").pk)
    note = Notification.objects.get()
    real_send = mail.EmailMultiAlternatives.send

    def dropped(self, fail_silently=False):
        raise smtplib.SMTPServerDisconnected("connection dropped")

    # when: the first attempt fails
    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", dropped)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        review_services.notification_send_email(notification_id=note.pk)
    note.refresh_from_db()
    # then: back to pending for the task's retry (which backs off on SMTP errors)
    assert note.email_state == "pending" and note.email_attempts == 1 and mail.outbox == []
    assert smtplib.SMTPException in send_notification_email.autoretry_for
    assert send_notification_email.retry_backoff

    # when: the retry runs
    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", real_send)
    assert review_services.notification_send_email(notification_id=note.pk) == "sent"
    # then: sent exactly once
    note.refresh_from_db()
    assert len(mail.outbox) == 1 and note.email_state == "sent" and note.email_attempts == 2


def test_preferences_choose_the_channels(engineer, reviewer, committed, api):
    # given: the author wants review news in the inbox only
    response = api(engineer).put(
        reverse("api-notification-preferences"),
        {"review.given": {"in_app": True, "email": False}},
        format="json",
    )
    assert response.status_code == 200 and response.json()["review.given"]["email"] is False
    change = awaiting_review(make_change(author=engineer), engineer)

    with committed():
        _request_changes(change, reviewer)

    # then: an inbox row, no e-mail
    assert Notification.objects.get().email_state == "none"
    assert mail.outbox == []


def test_bad_preferences_are_refused_with_a_reason(engineer, api):
    for body in ({"nope": {"email": True}}, {"review.given": {"email": "yes"}}, ["x"]):
        response = api(engineer).put(reverse("api-notification-preferences"), body, format="json")
        assert response.status_code == 400, body
        assert response.json()["detail"]
    assert review_services.preferences_for(engineer)["review.given"] == {
        "in_app": True,
        "email": True,
    }


@pytest.mark.parametrize(
    ("passed", "reasons", "outcome"),
    [
        (True, [], "pass"),
        (False, ["Compliance gap 12 points exceeds 5."], "fail"),
        (False, ["The gap is inconclusive: too few samples."], "inconclusive"),
    ],
)
def test_evaluation_finished_tells_the_author_the_outcome(
    engineer, committed, passed, reasons, outcome
):
    change = submit(make_change(author=engineer), engineer)
    with committed():
        services.change_request_record_verdict(
            change_id=change.pk,
            content_sha256=change.content_sha256,
            passed=passed,
            reasons=reasons,
        )
    note = Notification.objects.get(kind="evaluation.finished")
    assert note.recipient == engineer and note.title.endswith(outcome)


def test_voided_approval_and_deploy_and_attestation_reach_the_right_people(
    engineer, reviewer, reviewer2, committed, monkeypatch
):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        approve(change, reviewer)
        services.change_request_update(
            actor=engineer, change_request=change, data={"rationale": "Reworded."}
        )
    voided = Notification.objects.get(kind="approvals.voided")
    assert voided.recipient == reviewer

    change = pass_evaluation(submit(change, engineer))
    with committed():
        approve(change, reviewer)
        services.change_request_deploy(actor=engineer, change_request=change)
        audit.append(actor=None, verb="attestation.issued", obj=change, data={"version": 1})
    deployed = Notification.objects.filter(kind="change.deployed")
    assert {n.recipient for n in deployed} == {reviewer}  # the deployer (author) is not told
    ready = Notification.objects.get(kind="attestation.ready")
    assert ready.recipient == engineer and "version 1" in ready.title
    assert not Notification.objects.filter(recipient=reviewer2).exists()


def test_incident_opened_hook_tells_the_owning_team(engineer, engineer2, committed):
    change = make_change(author=engineer)
    with committed():
        audit.append(
            actor=None, verb="incident.opened", obj=change, data={"summary": "Gap in prod."}
        )
    notes = Notification.objects.filter(kind="incident.opened")
    assert {n.recipient for n in notes} == {engineer, engineer2}


def test_inbox_page_header_count_and_mark_read(client, engineer, reviewer, committed, api):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        _request_changes(change, reviewer)
    client.force_login(engineer)

    page = client.get(reverse("dashboard")).content.decode()
    assert "data-unread>1</span>" in page
    inbox = client.get(reverse("inbox")).content.decode()
    assert change.reference in inbox and "Mark read" in inbox

    listed = api(engineer).get(reverse("api-notification-list")).json()
    assert listed["unread"] == 1 and listed["count"] == 1
    # another user's ids are not theirs to mark
    assert api(reviewer).post(
        reverse("api-notification-read"), {"ids": [listed["results"][0]["id"]]}, format="json"
    ).json() == {"marked": 0, "unread": 0}
    assert (
        api(engineer)
        .post(reverse("api-notification-read"), {"ids": "x"}, format="json")
        .status_code
        == 400
    )

    client.post(reverse("inbox-read"), {"id": listed["results"][0]["id"]})
    assert Notification.objects.get().read_at is not None
    assert "data-unread" not in client.get(reverse("dashboard")).content.decode()


def test_hostile_titles_are_escaped_in_emails_and_the_inbox(client, engineer, reviewer, committed):
    payloads = [p for p in XSS_PAYLOADS if "<" in p and "\x00" not in p][:20]
    for payload in payloads:
        change = awaiting_review(make_change(author=engineer, title=payload[:200]), engineer)
        with committed():
            _request_changes(change, reviewer, comment=payload)
    assert len(mail.outbox) == len(payloads)
    for message in mail.outbox:
        html = message.alternatives[0][0]
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert "<svg" not in html.lower() and "<iframe" not in html.lower()
    client.force_login(engineer)
    from tests.changes.test_ui_xss import assert_page_is_clean

    assert_page_is_clean(client.get(reverse("inbox")).content.decode())


def test_the_sweep_resends_lost_wake_ups_once(
    engineer, reviewer, django_capture_on_commit_callbacks, committed
):
    from datetime import timedelta

    from django.utils import timezone

    # given: a review whose fan-out wake-up was lost (the on-commit callbacks never ran)
    change = awaiting_review(make_change(author=engineer), engineer)
    with django_capture_on_commit_callbacks(execute=False):
        _request_changes(change, reviewer)
    assert not Notification.objects.exists()

    # when: the sweep runs before the grace period, then after it
    assert review_services.requeue_stalled()["events"] == 0
    later = timezone.now() + timedelta(minutes=5)
    with committed():
        swept = review_services.requeue_stalled(now=later)

    # then: both unsent events (evaluation passed, changes requested) fanned out and their
    # e-mails went, once each; a second sweep finds nothing
    assert swept["events"] == 2
    kinds = sorted(Notification.objects.values_list("kind", flat=True))
    assert kinds == ["evaluation.finished", "review.given"] and len(mail.outbox) == 2
    assert set(Notification.objects.values_list("email_state", flat=True)) == {"sent"}
    with committed():
        assert review_services.requeue_stalled(now=later) == {
            "events": 0,
            "emails": 0,
            "webhooks": 0,
        }
    assert len(mail.outbox) == 2


def test_the_preferences_page_saves_unchecked_boxes_as_off(client, engineer):
    client.force_login(engineer)
    page = client.get(reverse("notification-preferences")).content.decode()
    assert 'name="review.given:email"' in page and "checked" in page
    # when: only the inbox box of "review given" stays checked
    response = client.post(reverse("notification-preferences"), {"review.given:in_app": "on"})
    assert response.status_code == 302
    prefs = review_services.preferences_for(engineer)
    assert prefs["review.given"] == {"in_app": True, "email": False}
    assert prefs["change.deployed"] == {"in_app": False, "email": False}


def test_mark_all_read_in_the_inbox(client, engineer, reviewer, committed):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        _request_changes(change, reviewer)
        audit.append(actor=None, verb="attestation.issued", obj=change, data={"version": 1})
    client.force_login(engineer)
    assert Notification.objects.filter(recipient=engineer, read_at__isnull=True).count() == 2
    response = client.post(reverse("inbox-read"), {"next": "//evil.example/"})
    assert response["Location"] == reverse("inbox")  # no open redirect
    assert not Notification.objects.filter(recipient=engineer, read_at__isnull=True).exists()
