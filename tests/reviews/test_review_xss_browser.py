"""Comment and notification payloads in the real browser: the change page (threads, a
line-anchored thread whose line carries payloads, the "since your review" diff) and the
inbox are inspected the way tests/browser/test_xss_browser.py inspects the core pages: no
dialog, no foreign script, no on* attribute, no script URL, no frame."""

from __future__ import annotations

import pytest

from changes import hooks, services
from reviews import discussion
from reviews import services as review_services
from reviews.models import Notification
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.browser.test_xss_browser import INIT_SCRIPT, Inspector, pack
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import awaiting_review
from tests.changes.xss_payloads import COMMENT_PAYLOADS
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]


def test_comment_and_notification_payloads_never_execute(
    live_server, monkeypatch, engineer, reviewer
):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    monkeypatch.setattr(hooks, "_attestation", hooks.AttestationPort())
    payloads = [p.replace("\x00", "") for p in COMMENT_PAYLOADS]
    system = SystemFactory(owner_team=engineer.teams.first())
    v1 = ProtocolFactory(system=system, version="v1", system_prompt="Be helpful.")
    v2 = ProtocolFactory(system=system, version="v2", system_prompt="\n".join(payloads[:30]) or "x")
    change = awaiting_review(
        services.change_request_create(
            actor=engineer,
            system=system,
            base_protocol=v1,
            proposed_protocol=v2,
            title=pack(payloads, 200)[0],
            rationale="Plain.",
            test_plan="Plain.",
        ),
        engineer,
    )
    # threads: one on the change with every payload as a comment, one on a hostile line
    thread = discussion.thread_open(actor=reviewer, change=change, body=payloads[0])
    chunks = pack(payloads, 2000)
    for chunk in chunks:
        discussion.comment_add(actor=reviewer, thread=thread, body=chunk)
    discussion.thread_open(
        actor=reviewer, change=change, body="This line?", part="system_prompt", line=3
    )
    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision="request_changes",
        comment=payloads[1],
        password=PASSWORD,
    )
    services.change_request_update(
        actor=engineer, change_request=change, data={"rationale": "\n\n".join(payloads[:40])}
    )
    # notifications carrying the excerpts and titles (fanned out as the worker would)
    from changes.models import AuditEvent

    for event_id in AuditEvent.objects.filter(verb__in=["comment.added"]).values_list(
        "id", flat=True
    ):
        review_services.fan_out(event_id=event_id)
    assert Notification.objects.filter(recipient=engineer).exists()

    with launch_browser() as browser:
        for username, paths in (
            ("engineer", [f"/changes/{change.pk}/", "/reviews/inbox/"]),
            ("reviewer", [f"/changes/{change.pk}/"]),
        ):
            watched = Watched(browser, live_server.url, "xss-reviews", init_script=INIT_SCRIPT)
            inspector = Inspector(watched)
            watched.login(username)
            for path in paths:
                watched.goto(path)
                inspector.check(f"{username} {path}")
            if username == "reviewer":  # the pages really carried the payloads
                assert watched.page.locator("#since-your-review").count() == 1
                assert watched.page.locator("[data-comment]").count() == 2 + len(chunks)
                assert watched.page.locator(".thread header code").count() == 1
            assert inspector.dialogs == [], inspector.dialogs
            assert inspector.findings == [], "\n".join(inspector.findings[:20])
            assert watched.problems == [], watched.problems
            watched.close()
