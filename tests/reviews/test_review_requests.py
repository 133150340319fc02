"""Requested reviewers and "what changed since your review" (issue 14, items 2 and 3)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import services
from changes.models import AuditEvent
from reviews.models import Notification, ReviewRequest
from tests.changes.test_api_support import awaiting_review, pass_evaluation, submit
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, UserFactory, make_change

pytestmark = pytest.mark.django_db


def _ask(api, actor, change, reviewers):
    return api(actor).post(
        reverse("api-review-requests", kwargs={"pk": change.pk}),
        {"reviewers": reviewers},
        format="json",
    )


def _nothing_recorded():
    return (
        ReviewRequest.objects.count(),
        AuditEvent.objects.filter(verb="review.requested").count(),
    )


def test_author_requests_a_reviewer_who_is_told_and_sees_it_pending(
    api, client, engineer, reviewer, committed
):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        response = _ask(api, engineer, change, ["reviewer"])
    assert response.status_code == 201, response.content
    [row] = response.json()["requests"]
    assert row["reviewer"] == "reviewer" and row["state"] == "pending"
    note = Notification.objects.get(kind="review.requested")
    assert note.recipient == reviewer and change.reference in note.title

    client.force_login(reviewer)
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert f'data-requested-change="{change.pk}"' in dashboard
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert 'data-reviewer="reviewer" data-state="pending"' in page


@pytest.mark.parametrize("who", ["author", "same_team_on_high", "no_role", "deactivated"])
def test_ineligible_reviewers_are_refused_with_the_reason(api, engineer, team_a, who):
    # given: an author who is also a reviewer, on a high-criticality system
    author = UserFactory(username="engrev", roles=["engineer", "reviewer"], team=team_a)
    system = SystemFactory(owner_team=team_a, criticality="high")
    change = awaiting_review(make_change(author=author, system=system), author)
    target = {
        "author": author,
        "same_team_on_high": UserFactory(username="mate", roles=["reviewer"], team=team_a),
        "no_role": UserFactory(username="norole"),
        "deactivated": UserFactory(username="gone", roles=["reviewer"]),
    }[who]
    if who == "deactivated":
        target.is_active = False
        target.save()
    before = _nothing_recorded()

    response = _ask(api, author, change, [target.username])

    assert response.status_code == 400, response.content
    body = response.json()
    expected = {
        "author": "is the author",
        "same_team_on_high": "author's team",
        "no_role": "reviewer role",
        "deactivated": "deactivated",
    }[who]
    assert expected in body["detail"] and body["reasons"]
    assert _nothing_recorded() == before


def test_only_the_author_or_an_editor_may_request(api, engineer, reviewer, reviewer2):
    change = awaiting_review(make_change(author=engineer), engineer)
    response = _ask(api, reviewer2, change, ["reviewer"])
    assert response.status_code == 403
    assert _nothing_recorded() == (0, 0)


@pytest.mark.parametrize("body", [[], "reviewer", [None], [True], ["nobody-here"]])
def test_malformed_requests_are_400(api, engineer, reviewer, body):
    change = awaiting_review(make_change(author=engineer), engineer)
    response = _ask(api, engineer, change, body)
    assert response.status_code == 400 and response.json()["detail"]
    assert _nothing_recorded() == (0, 0)


def test_answer_then_edit_then_re_request_and_see_what_changed(
    api, client, engineer, reviewer, committed
):
    # given: reviewer was asked and requested changes on content A
    change = awaiting_review(make_change(author=engineer), engineer)
    _ask(api, engineer, change, ["reviewer"])
    hash_a = change.content_sha256
    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision="request_changes",
        comment="Name the suite.",
        password=PASSWORD,
    )
    [row] = _ask_status(api, engineer, change)
    assert row["state"] == "answered" and row["decision"] == "request_changes"
    assert not row["outdated"]

    # when: the author edits the rationale and the proposed protocol
    new_protocol = ProtocolFactory(
        system=change.system, system_prompt="You are careful. Never quote e-mail addresses."
    )
    services.change_request_update(
        actor=engineer,
        change_request=change,
        data={"rationale": "Now with the pii suite named.", "proposed_protocol": new_protocol},
    )
    change.refresh_from_db()
    [row] = _ask_status(api, engineer, change)
    assert row["outdated"] is True

    # then: the reviewer sees exactly what changed since hash A, and the old review is outdated
    since = api(reviewer).get(reverse("api-since-my-review", kwargs={"pk": change.pk})).json()
    assert since["from_sha256"] == hash_a and since["to_sha256"] == change.content_sha256
    assert [f["key"] for f in since["fields"]] == ["rationale"]
    assert [p["key"] for p in since["protocol"]] == ["proposed.system_prompt"]
    inserted = [
        line["text"] for line in since["protocol"][0]["unified"] if line["kind"] == "insert"
    ]
    assert any("Never quote e-mail addresses" in text for text in inserted)
    client.force_login(reviewer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert "Changes since your review" in page and "Never quote e-mail addresses" in page
    assert 'class="outdated-review"' in page

    # when: the author re-requests after resubmitting
    change = pass_evaluation(submit(change, engineer))
    with committed():
        response = _ask(api, engineer, change, ["reviewer"])
    [row] = response.json()["requests"]
    assert row["state"] == "pending" and row["requested_on_sha256"] == change.content_sha256
    assert ReviewRequest.objects.get().times == 2
    assert Notification.objects.filter(kind="review.requested", recipient=reviewer).count() == 1


def test_since_without_a_review_or_snapshot_is_a_clear_error(api, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    url = reverse("api-since-my-review", kwargs={"pk": change.pk})
    assert api(reviewer).get(url).status_code == 400
    assert api(reviewer).get(url + "?sha256=" + "0" * 64).status_code == 404
    same = api(reviewer).get(url + "?sha256=" + change.content_sha256).json()
    assert same["same"] is True


def test_the_change_page_offers_request_and_re_request_to_the_author(
    client, engineer, reviewer, reviewer2, team_a_reviewer
):
    change = awaiting_review(make_change(author=engineer), engineer)
    client.force_login(engineer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert 'id="request-review-form"' in page
    assert '<option value="reviewer">' in page and '<option value="engineer">' not in page

    response = client.post(reverse("review-request", args=[change.pk]), {"reviewer": "reviewer"})
    assert response.status_code == 302
    assert ReviewRequest.objects.filter(reviewer=reviewer).exists()
    refused = client.post(
        reverse("review-request", args=[change.pk]), {"reviewer": "engineer"}, follow=True
    )
    assert "is the author" in refused.content.decode()


def _ask_status(api, actor, change):
    url = reverse("api-review-requests", kwargs={"pk": change.pk})
    return api(actor).get(url).json()["requests"]


def test_asking_again_while_pending_on_the_same_content_pings_nobody(
    api, engineer, reviewer, committed
):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        _ask(api, engineer, change, ["reviewer"])
        again = _ask(api, engineer, change, ["reviewer"])
    assert again.status_code == 201 and again.json()["requests"][0]["state"] == "pending"
    assert ReviewRequest.objects.get().times == 1
    assert AuditEvent.objects.filter(verb="review.requested").count() == 1
    assert Notification.objects.filter(kind="review.requested").count() == 1
