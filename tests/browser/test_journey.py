"""The whole journey in a real browser (the system Chromium, driven by Playwright).

An engineer files a change through the form and submits it; the evaluation verdict is
recorded through the workflow's seam; the author's own sign-off is refused with the reason;
a reviewer on another team signs it off with their password. Any console error or HTTP 5xx
seen by the page fails the test. Screenshots go to ``$ARTIFACTS_DIR/screenshots/journey/``.
"""

from __future__ import annotations

import re

import pytest

from changes import hooks, services, states
from changes.models import ChangeRequest, Review
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.ports import PassingEvaluationPort
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory

pytestmark = [pytest.mark.browser, requires_chromium]
JOURNEY = "journey"


@pytest.fixture
def browser():
    with launch_browser() as instance:
        yield instance


@pytest.fixture
def passing_engine(monkeypatch):
    """The workflow's evaluation seam, with verdicts recorded by the test (no worker)."""
    port = PassingEvaluationPort()
    monkeypatch.setattr(hooks, "_evaluation", port)
    return port


@pytest.fixture
def no_broker(monkeypatch):
    """Keep the real attestation panel, but record render wake-ups instead of sending them
    to the broker (no worker runs in this test)."""
    try:
        from attestations import services as attestation_services
    except ImportError:
        return
    if hasattr(attestation_services, "enqueue_render"):
        monkeypatch.setattr(attestation_services, "enqueue_render", lambda attestation_id: True)


def test_file_submit_and_sign_off_in_the_browser(
    live_server, browser, passing_engine, no_broker, engineer, reviewer
):
    # given a medium-criticality system owned by the engineer's team, with v1 and v2
    system = SystemFactory(name="support-assistant", owner_team=engineer.teams.first())
    v1 = ProtocolFactory(
        system=system, version="v1",
        body="# Support protocol\n\n- Summarise tickets.\n- Quote the reporter's e-mail.",
        system_prompt="You are the support assistant. Quote reporters verbatim.",
    )  # fmt: skip
    v2 = ProtocolFactory(
        system=system, version="v2",
        body="# Support protocol\n\n- Summarise tickets.\n- Redact e-mail addresses as [email].",
        system_prompt="You are the support assistant. Never reveal e-mail addresses.",
    )  # fmt: skip
    author = Watched(browser, live_server.url, JOURNEY)
    problems = author.problems

    # when the engineer logs in and files the change through the form
    author.login("engineer")
    author.shot("01-dashboard-engineer")
    author.goto("/changes/new/")
    page = author.page
    page.select_option("#id_system", label="support-assistant")
    # the version selects reload for the chosen system (htmx)
    page.wait_for_selector("#id_proposed_protocol option:has-text('v2')", state="attached")
    page.select_option("#id_base_protocol", value=str(v1.pk))
    page.select_option("#id_proposed_protocol", value=str(v2.pk))
    page.fill("#id_title", "Redact e-mail addresses in ticket summaries")
    page.locator("#id_rationale").press_sequentially(
        "Summaries leak **PII** into analytics.", delay=5
    )
    # the live preview shows sanitised Markdown
    page.wait_for_selector("#preview-rationale strong:has-text('PII')")
    page.fill(
        "#id_test_plan", "Run the *pii-redaction* suite under monitored and unmonitored cues."
    )
    page.wait_for_selector("#preview-test_plan em:has-text('pii-redaction')")
    page.fill("#id_expected-0-behaviour", "e-mail in a summary")
    page.fill("#id_expected-0-before", "quoted verbatim")
    page.fill("#id_expected-0-after", "redacted as [email]")
    page.click("button:has-text('Add a behaviour')")
    page.fill("#id_expected-1-behaviour", "phone number in a summary")
    page.fill("#id_expected-1-before", "quoted")
    page.fill("#id_expected-1-after", "unchanged")
    page.fill("#id_rollout_plan", "Canary at 5% for a day, then 100%.")
    page.fill("#id_backout_plan", "Redeploy **v1**.")
    page.wait_for_selector("#preview-backout_plan strong:has-text('v1')")
    author.shot("02-new-change-form")
    page.click("button:has-text('File as draft')")
    page.wait_for_url(re.compile(r"/changes/\d+/$"))

    # then the change page shows the draft with its diff
    change = ChangeRequest.objects.get(title="Redact e-mail addresses in ticket summaries")
    assert change.state == states.DRAFT
    assert len(change.expected_changes) == 2
    assert page.locator(".badge-draft").first.is_visible()
    assert page.locator(".diff-table ins").count() > 0
    author.shot("03-change-draft")

    # when the author submits it
    page.click("button:has-text('Submit for evaluation')")
    page.wait_for_selector(".badge-evaluating")
    change.refresh_from_db()
    assert change.state == states.EVALUATING

    # and the evaluation engine reports a passing verdict through the seam
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
    )
    change.refresh_from_db()
    assert change.state == states.AWAITING_REVIEW

    # then the author's own sign-off page refuses, with the reason
    author.goto(f"/changes/{change.pk}/review/")
    refusal = page.locator("#independence-refusal")
    assert "Authors cannot review their own change." in refusal.inner_text()
    assert page.locator("button:has-text('Sign')").is_disabled()
    author.shot("04-review-refused-for-author")
    author.logout()
    author.close()

    # when a reviewer on another team logs in and signs it off with the password
    signer = Watched(browser, live_server.url, JOURNEY)
    signer.login("reviewer")
    page = signer.page
    assert page.locator(f"text={change.title}").first.is_visible()  # in "awaiting my review"
    signer.shot("05-dashboard-reviewer")
    page.click(f"a:has-text('{change.title}')")
    page.wait_for_url(re.compile(rf"/changes/{change.pk}/$"))
    page.click("a:has-text('Review and sign') >> nth=0")
    page.wait_for_url(re.compile(r"/review/$"))
    assert change.content_sha256 in page.locator("#signed-hash").inner_text()
    assert "I approve deployment of the change" in page.locator("#signature-meaning").inner_text()
    page.check("input[name=decision][value=approve]")
    page.fill("#id_comment", "Verified the diff and the evaluation.")
    page.fill("#id_password", PASSWORD)
    signer.shot("06-review-form-reviewer")
    page.click("button:has-text('Sign')")
    page.wait_for_url(re.compile(rf"/changes/{change.pk}/$"))

    # then the change is approved on that exact content, and the gate opens
    page.wait_for_selector(".badge-approved")
    assert page.locator(".tag-ok:has-text('valid approval')").is_visible()
    signer.shot("07-change-approved")
    review = Review.objects.get(change=change)
    assert review.reviewer == reviewer and review.content_sha256 == change.content_sha256
    problems += signer.problems
    signer.close()

    # and nothing went wrong in either browser session
    assert problems == []
