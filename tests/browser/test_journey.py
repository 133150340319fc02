"""The whole journey in a real browser (the system Chromium, driven by Playwright).

An engineer files a change through the form and submits it; the evaluation verdict is
recorded through the workflow's seam; the author's own sign-off is refused with the reason;
a reviewer on another team signs it off with their password. Any console error or HTTP 5xx
seen by the page fails the test. Screenshots go to ``$ARTIFACTS_DIR``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.db import connections

from changes import hooks, services, states
from changes.models import ChangeRequest, Review
from tests.changes.ports import PassingEvaluationPort
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
# between browser steps are still synchronous and safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="the system Chromium (/usr/bin/chromium) is not installed"
    ),
]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ARTIFACTS_DIR", "/work/main/artifacts/screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
            # ORM calls made while Playwright's loop runs get their own connection (Django
            # keys connections by async context); close it so the test database can be dropped.
            connections.close_all()


class Watched:
    """A page whose console errors, uncaught exceptions and 5xx responses are collected."""

    def __init__(self, browser, base_url: str, name: str):
        self.context = browser.new_context(viewport={"width": 1360, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.base_url = base_url
        self.name = name
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("response", self._response)

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _response(self, response):
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def goto(self, path: str):
        return self.page.goto(self.base_url + path)

    def shot(self, label: str):
        self.page.screenshot(path=str(artifacts_dir() / f"{label}.png"), full_page=True)

    def login(self, username: str):
        self.goto("/accounts/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url(re.compile(r"/$"))

    def logout(self):
        self.page.click("button:has-text('Log out')")
        self.page.wait_for_url(re.compile(r"/accounts/login/"))

    def close(self):
        self.context.close()


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
    author = Watched(browser, live_server.url, "engineer")
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
    signer = Watched(browser, live_server.url, "reviewer")
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
