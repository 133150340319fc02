"""The review/sign-off page: what is signed, independence, password re-entry."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import states
from changes.models import ChangeRequest, Review
from tests.changes.test_ui_pages import change_in_state, login, system_with_versions
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def sign(client, change, **overrides):
    data = {
        "decision": "approve",
        "comment": "",
        "password": PASSWORD,
        "expected_sha256": change.content_sha256,
    }
    data.update(overrides)
    return client.post(reverse("change-review", args=[change.pk]), data)


def test_review_page_shows_exactly_what_is_signed(client, engineer, reviewer):
    # given a change awaiting review
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    # when the reviewer opens the sign-off page
    html = client.get(reverse("change-review", args=[change.pk])).content.decode()
    # then the content hash and the meaning of the signature are spelled out
    assert change.content_sha256 in html
    assert (
        f"I approve deployment of the change {change.reference} with content hash "
        f"{change.content_sha256}." in html
    )
    assert 'type="password"' in html and 'name="decision"' in html
    assert "You are independent of this change" in html
    assert "<fieldset disabled" not in html


def test_reviewer_signs_with_the_password(client, engineer, reviewer):
    # given a change awaiting review on a medium system (one approval needed)
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    # when the reviewer approves with their password
    response = sign(client, change, comment="Looks right.")
    # then the signed review exists, the change is approved, and the page says what was signed
    assert response.status_code == 302
    review = Review.objects.get(change=change)
    assert review.reviewer == reviewer and review.decision == "approve"
    assert review.content_sha256 == change.content_sha256
    assert review.signature_meaning.startswith("I approve deployment of the change")
    assert ChangeRequest.objects.get(pk=change.pk).state == states.APPROVED
    page = client.get(response["Location"]).content.decode()
    assert "Signed:" in page and "valid approval" in page


def test_wrong_password_signs_nothing(client, engineer, reviewer):
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    response = sign(client, change, password="not my password")
    assert response.status_code == 403
    assert "did not match" in response.content.decode()
    assert not Review.objects.exists()
    assert ChangeRequest.objects.get(pk=change.pk).state == states.AWAITING_REVIEW


def test_missing_password_is_a_field_error(client, engineer, reviewer):
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    response = sign(client, change, password="")
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Review.objects.exists()


def test_authors_own_sign_off_is_refused_with_the_reason(client, engineer):
    # given the author's own change awaiting review
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, engineer)
    # when the author opens the sign-off page
    html = client.get(reverse("change-review", args=[change.pk])).content.decode()
    # then the reasons are shown and signing is disabled
    assert "You cannot sign this change." in html
    assert "Authors cannot review their own change." in html
    assert "You do not hold the reviewer role." in html
    assert "<fieldset disabled" in html
    # when they post a signature anyway
    response = sign(client, change)
    # then it is refused with the reason and nothing is recorded
    assert response.status_code == 403
    assert "Authors cannot review their own change." in response.content.decode()
    assert not Review.objects.exists()
    assert ChangeRequest.objects.get(pk=change.pk).state == states.AWAITING_REVIEW


def test_same_team_reviewer_refused_on_a_high_criticality_system(client, engineer, team_a_reviewer):
    # given a change on a high-criticality system, and a reviewer on the author's team
    system, *_ = system_with_versions(engineer.teams.first(), criticality="high")
    change = change_in_state(engineer, states.AWAITING_REVIEW, system=system)
    login(client, team_a_reviewer)
    # then the page explains why they cannot sign, and a forced post changes nothing
    html = client.get(reverse("change-review", args=[change.pk])).content.decode()
    assert "the reviewer must not be on the author&#x27;s team" in html
    assert sign(client, change).status_code == 403
    assert not Review.objects.exists()


def test_stale_content_hash_is_refused(client, engineer, reviewer):
    # given a reviewer who opened an older version of the change
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    # when they sign with the hash they saw, which is no longer current
    response = sign(client, change, expected_sha256="0" * 64)
    # then the signature is refused as stale
    assert response.status_code == 409
    assert "was edited after you opened it" in response.content.decode()
    assert not Review.objects.exists()


def test_request_changes_needs_a_comment(client, engineer, reviewer):
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, reviewer)
    response = sign(client, change, decision="request_changes", comment="")
    assert response.status_code == 400
    assert "Say what must change or why it is rejected." in response.content.decode()
    assert not Review.objects.exists()
    # and with a comment it moves the change
    sign(client, change, decision="request_changes", comment="Add an unmonitored cue.")
    assert ChangeRequest.objects.get(pk=change.pk).state == states.CHANGES_REQUESTED


def test_change_not_open_for_review_disables_signing(client, engineer, reviewer):
    change = change_in_state(engineer, states.EVALUATING)
    login(client, reviewer)
    html = client.get(reverse("change-review", args=[change.pk])).content.decode()
    assert "is not open for review" in html and "<fieldset disabled" in html
    assert sign(client, change).status_code == 409
    assert not Review.objects.exists()


def test_reviews_show_signature_and_independence_on_the_change_page(
    client, engineer, reviewer, auditor
):
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, auditor)
    html = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    review = Review.objects.get()
    assert review.signature_meaning in html.replace("&#x27;", "'")
    assert "Is not the author" in html and "Did not edit the change" in html
    assert "1 of 1" in html  # approvals on this content
