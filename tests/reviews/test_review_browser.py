"""Browser: the author requests reviewer2; reviewer2 sees it in the inbox (and by e-mail on
the console backend), comments on a diff line and asks for changes; the author edits;
reviewer2 sees "Changes since your review" and approves. Celery tasks run eagerly here."""

from __future__ import annotations

import re

import pytest

from changes import hooks, services
from reviews.models import Comment, Thread
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import awaiting_review, pass_evaluation, submit
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]
JOURNEY = "review-collaboration"


@pytest.fixture
def browser():
    with launch_browser() as instance:
        yield instance


def test_request_inbox_line_comment_since_and_approve(
    live_server, browser, monkeypatch, settings, capsys, eager, engineer, reviewer2
):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    monkeypatch.setattr(hooks, "_attestation", hooks.AttestationPort())
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    system = SystemFactory(name="support-assistant", owner_team=engineer.teams.first())
    v1 = ProtocolFactory(system=system, version="v1", system_prompt="Quote reporters.")
    v2 = ProtocolFactory(system=system, version="v2", system_prompt="Never reveal e-mails.")
    filed = services.change_request_create(
        actor=engineer,
        system=system,
        base_protocol=v1,
        proposed_protocol=v2,
        title="Redact e-mails",
        rationale="Leaks PII.",
        test_plan="Run the pii suite.",
    )
    change = awaiting_review(filed, engineer)
    detail = f"/changes/{change.pk}/"

    # the author asks reviewer2
    author = Watched(browser, live_server.url, JOURNEY)
    author.login("engineer")
    author.goto(detail)
    author.page.select_option("#id_request_reviewer", value="reviewer2")
    author.page.click("#request-review-form button")
    author.page.wait_for_selector('[data-reviewer="reviewer2"][data-state="pending"]')
    author.shot("01-requested")

    # reviewer2 sees it in the header and the inbox, and got an e-mail (console backend)
    rev = Watched(browser, live_server.url, JOURNEY)
    rev.login("reviewer2")
    assert rev.page.locator("[data-unread]").inner_text() == "1"
    rev.page.click("a[data-inbox]")
    rev.page.click(f"text=requested your review of {change.reference}")
    rev.page.wait_for_url(re.compile(rf"/changes/{change.pk}/"))
    printed = capsys.readouterr().out
    assert "To: reviewer2@example.com" in printed and "requested your review" in printed

    # reviewer2 clicks line 1 of the proposed system prompt in the diff: the thread form
    # opens under that line with part, side and line filled in (static/js/app.js)
    line_no = '.diff-table [data-line-anchor][data-part="system_prompt"][data-side="new"]'
    rev.page.click(line_no + '[data-line="1"]')
    form = rev.page.locator(".diff-table tr.diff-comment-row #new-thread-form")
    form.wait_for()
    assert rev.page.input_value("#id_thread_part") == "system_prompt"
    assert rev.page.input_value("#id_thread_side") == "new"
    assert rev.page.input_value("#id_thread_line") == "1"
    assert "proposed system prompt, line 1" in form.locator("[data-line-target]").inner_text()
    rev.page.fill("#id_thread_body", "Does this cover **phone numbers**?")
    rev.shot("02a-line-form")
    rev.page.click("#new-thread-form button[type=submit]")
    rev.page.wait_for_selector(".thread strong:has-text('phone numbers')")
    assert "line 1" in rev.page.locator(".thread header").inner_text()
    # and the thread shows under that line of the diff, linking to it
    note = rev.page.locator(".diff-table tr.diff-thread-row")
    assert note.count() == 1 and "phone numbers" in note.inner_text()
    thread = Thread.objects.get()
    assert note.locator("a").get_attribute("href") == f"#thread-{thread.pk}"
    assert (thread.part, thread.side, thread.line) == ("system_prompt", "new", 1)
    rev.shot("02-line-comment")
    rev.goto(f"/changes/{change.pk}/review/")
    rev.page.check("input[value='request_changes']")
    rev.page.fill("#id_comment", "Cover phone numbers too.")
    rev.page.fill("#id_password", PASSWORD)
    rev.page.click("button:has-text('Sign')")
    rev.page.wait_for_url(re.compile(rf"/changes/{change.pk}/"))

    # the author edits (the prompt now covers phone numbers) and resubmits
    v3 = ProtocolFactory(system=system, version="v3", system_prompt="Never reveal phones.")
    services.change_request_update(
        actor=engineer, change_request=change, data={"proposed_protocol": v3}
    )
    change = pass_evaluation(submit(change, engineer))

    # reviewer2 sees what changed since their review, and approves
    rev.goto(detail)
    since = rev.page.locator("#since-your-review")
    assert "Never reveal phones." in since.inner_text()
    assert rev.page.locator(".outdated-review").count() == 1
    # a line number of the "changes since your review" diff opens the form for that line too
    rev.page.click('#since-your-review [data-line-anchor][data-side="new"][data-line="1"]')
    rev.page.locator("#since-your-review #new-thread-form").wait_for()
    assert rev.page.input_value("#id_thread_part") == "system_prompt"
    assert rev.page.input_value("#id_thread_line") == "1"
    rev.page.click("#new-thread-form [data-line-cancel]")  # Cancel puts the form back
    rev.page.locator("#discussion > #new-thread-form").wait_for()
    rev.shot("03-since-your-review")
    rev.goto(f"/changes/{change.pk}/review/")
    rev.page.check("input[value='approve']")
    rev.page.fill("#id_password", PASSWORD)
    rev.page.click("button:has-text('Sign')")
    rev.page.wait_for_url(re.compile(rf"/changes/{change.pk}/"))
    change.refresh_from_db()
    assert change.state == "approved"
    assert Thread.objects.get().line == 1 and Comment.objects.count() == 1
    assert author.problems == [] and rev.problems == []
    author.close()
    rev.close()
