"""Click-to-comment needs anchors: each numbered diff line of the change page, and each current
line of "changes since your review", names its part, side and line (the JS reads them)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import services
from reviews import discussion
from reviews.panels import number_since
from tests.changes.test_api_support import awaiting_review, pin_null_ports
from tests.factories import PASSWORD, ProtocolFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def test_the_change_page_diff_carries_line_anchors_and_the_script(client, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    client.force_login(reviewer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert 'data-line-anchor data-part="system_prompt" data-side="new" data-line="1"' in page
    assert 'data-line-anchor data-part="system_prompt" data-side="old" data-line="1"' in page
    assert 'id="new-thread-form"' in page


def test_threads_on_lines_carry_their_anchor_for_placing_under_the_line(client, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    thread = discussion.thread_open(
        actor=reviewer, change=change, body="Hm", part="system_prompt", side="new", line=1,
        blocking=True,
    )  # fmt: skip
    client.force_login(reviewer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert (
        f'data-thread="{thread.pk}" data-thread-part="system_prompt" data-thread-side="new" '
        'data-thread-line="1" data-thread-blocking' in page
    )


def test_since_lines_are_numbered_as_they_are_now():
    since = {
        "protocol": [
            {
                "key": "proposed.system_prompt",
                "label": "Proposed system prompt",
                "unified": [
                    {"kind": "header", "text": "--- a"},
                    {"kind": "header", "text": "+++ b"},
                    {"kind": "hunk", "text": "@@ -3,3 +3,4 @@"},
                    {"kind": "equal", "text": " c"},
                    {"kind": "delete", "text": "-d"},
                    {"kind": "insert", "text": "+D"},
                    {"kind": "insert", "text": "+E"},
                    {"kind": "equal", "text": " f"},
                    {"kind": "hunk", "text": "@@ -20 +21 @@"},
                    {"kind": "insert", "text": "+z"},
                ],
            },
            {"key": "base.body", "label": "Base protocol body", "unified": []},
        ]
    }
    out = number_since(since)
    assert [line["no"] for line in out["protocol"][0]["unified"]] == [
        None, None, None, 3, None, 4, 5, 6, None, 21,
    ]  # fmt: skip
    assert out["protocol"][0]["anchor_part"] == "system_prompt"
    assert out["protocol"][0]["anchor_side"] == "new"
    assert out["protocol"][1]["anchor_side"] == "old"
    assert "no" not in since["protocol"][0]["unified"][3]  # the input is not changed
    assert number_since(None) is None and number_since({"same": True}) == {"same": True}


def test_the_since_diff_on_the_page_has_anchors_for_the_current_lines(client, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    services.review_submit(
        actor=reviewer, change_request=change, decision="request_changes",
        comment="More.", password=PASSWORD,
    )  # fmt: skip
    change.refresh_from_db()
    v3 = ProtocolFactory(system=change.system, version="v9", system_prompt="One.\nTwo.")
    services.change_request_update(
        actor=engineer, change_request=change, data={"proposed_protocol": v3}
    )
    client.force_login(reviewer)
    page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    since = page.split('id="since-your-review"')[1].split("</section>")[0]
    assert 'data-side="new" data-line="2"' in since and "Two." in since
