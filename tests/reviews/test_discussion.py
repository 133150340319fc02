"""Discussion threads: on the change and on diff lines, Markdown sanitised, resolvable,
kept with their content hash; unresolved blocking threads close the deploy gate."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.core import mail
from django.urls import reverse

from changes import hooks, selectors, services
from reviews.models import Comment, Notification, Thread
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import approve, awaiting_review
from tests.changes.test_ui_xss import assert_page_is_clean
from tests.changes.xss_payloads import COMMENT_PAYLOADS, FORBIDDEN_TAGS
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def _open(api, user, change, **body):
    body.setdefault("body", "Looks fine.")
    return api(user).post(reverse("api-thread-list", kwargs={"pk": change.pk}), body, format="json")


def test_line_comment_is_anchored_kept_with_its_hash_and_told_to_the_author(
    api, engineer, reviewer, committed
):
    change = awaiting_review(make_change(author=engineer), engineer)
    with committed():
        response = _open(
            api, reviewer, change, body="Why **this** line?", part="system_prompt", line=1
        )
    assert response.status_code == 201, response.content
    thread = response.json()
    assert thread["part"] == "system_prompt" and thread["line"] == 1 and thread["side"] == "new"
    assert thread["line_text"] == change.proposed_protocol.system_prompt.split("\n")[0]
    assert thread["content_sha256"] == change.content_sha256
    assert thread["comments"][0]["html"] == "<p>Why <strong>this</strong> line?</p>"
    note = Notification.objects.get(kind="comment.added")
    assert note.recipient == engineer and "Why **this** line?" in note.body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"body": ""}, "body"),
        ({"body": "x\x00y"}, "null"),
        ({"body": "x" * 20_001}, "at most"),
        ({"part": "system_prompt"}, "line"),
        ({"part": "system_prompt", "line": 999}, "has lines 1 to"),
        ({"part": "system_prompt", "line": "abc"}, "line"),
        ({"part": "nope", "line": 1}, "part"),
        ({"part": "body", "line": 1, "side": "left"}, "side"),
        ({"line": 3}, "part"),
        ({"blocking": "yes"}, "blocking"),
    ],
)
def test_bad_threads_are_400_with_a_reason_and_nothing_saved(api, engineer, reviewer, body, reason):
    change = awaiting_review(make_change(author=engineer), engineer)
    body = {"body": "A comment.", **body}
    response = _open(api, reviewer, change, **body)
    assert response.status_code == 400, response.content
    assert reason in response.json()["detail"]
    assert not Thread.objects.exists() and not Comment.objects.exists()


def test_roles_without_a_voice_and_outsiders_are_refused(api, engineer, auditor, outsider):
    change = awaiting_review(make_change(author=engineer), engineer)
    assert _open(api, auditor, change).status_code == 403
    assert _open(api, outsider, change).status_code in (403, 404)
    assert not Thread.objects.exists()


def test_blocking_thread_closes_the_gate_until_resolved(
    api, engineer, reviewer, reviewer2, monkeypatch
):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    change = awaiting_review(make_change(author=engineer), engineer)
    thread_id = _open(api, reviewer, change, body="Backout untested.", blocking=True).json()["id"]
    change = approve(change, reviewer)
    assert change.state == "approved"
    reasons = selectors.gate_reasons(change)
    assert reasons == [f"Blocking discussion #{thread_id} by reviewer is unresolved."]

    # only the thread's author, the change's author or an admin resolves
    resolve = reverse("api-thread-resolve", kwargs={"pk": thread_id})
    assert api(reviewer2).post(resolve, {"resolved": True}, format="json").status_code == 403
    assert api(engineer).post(resolve, {"resolved": True}, format="json").json()["resolved"]
    assert selectors.gate_reasons(change) == []
    services.change_request_deploy(actor=engineer, change_request=change)


def test_replies_and_outdated_content_on_the_change_page(client, api, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    thread_id = _open(api, reviewer, change, body="First.").json()["id"]
    services.change_request_update(
        actor=engineer, change_request=change, data={"test_plan": "Run pii twice."}
    )
    client.force_login(engineer)
    response = client.post(
        reverse("thread-reply", args=[change.pk, thread_id]), {"body": "Done in rev 2."}
    )
    assert response.status_code == 302
    first, reply = Comment.objects.order_by("id")
    assert first.content_sha256 != reply.content_sha256
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert "on older content" in page and "Done in rev 2." in page


def test_comment_payloads_are_sanitised_on_the_page_in_the_api_and_in_emails(
    client, api, engineer, reviewer, committed
):
    change = awaiting_review(make_change(author=engineer), engineer)
    payloads = [p for p in COMMENT_PAYLOADS if "\x00" not in p]
    with committed():
        thread_id = _open(api, reviewer, change, body=payloads[0]).json()["id"]
        for payload in payloads[1:]:
            url = reverse("api-thread-comment", kwargs={"pk": thread_id})
            assert api(reviewer).post(url, {"body": payload}, format="json").status_code == 201
    client.force_login(engineer)
    assert_page_is_clean(client.get(reverse("change-detail", args=[change.pk])).content.decode())
    assert_page_is_clean(client.get(reverse("inbox")).content.decode())
    listed = api(engineer).get(reverse("api-thread-list", kwargs={"pk": change.pk})).json()
    for comment in listed["threads"][0]["comments"]:
        _assert_fragment_is_clean(comment["html"])
    assert mail.outbox
    for message in mail.outbox:
        html = message.alternatives[0][0].lower()
        assert "<script" not in html and "<iframe" not in html and "<svg" not in html
        assert "\n" not in message.subject and "\r" not in message.subject


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _assert_fragment_is_clean(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert tag not in FORBIDDEN_TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on") and name not in {"style", "srcdoc"}, (tag, name)
            if name == "href":
                squeezed = "".join(ch for ch in (value or "") if ch > " ").lower()
                assert not squeezed.startswith(("javascript:", "data:", "vbscript:")), value
