"""Browser checks: the admins' reviewer-rules editor (a refused unsatisfiable set, then a
saved version) and the change page's "Confirm emergency" button (the reviewer has it and
uses it; the author never sees it)."""

from __future__ import annotations

import pytest

from changes import hooks
from changes.models import AuditEvent
from reviews import rules
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import awaiting_review
from tests.factories import SystemFactory, TeamFactory, make_change

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]
JOURNEY = "review-rules-emergency"


@pytest.fixture
def browser():
    with launch_browser() as instance:
        yield instance


def test_admin_edits_reviewer_rules_in_the_browser(
    live_server, browser, admin_user, team_a, reviewer
):
    system = SystemFactory(owner_team=team_a, name="triage-bot")
    TeamFactory(name="Nobody")
    page = Watched(browser, live_server.url, JOURNEY)
    page.login("admin")
    page.goto(f"/systems/{system.pk}/")
    page.page.click("#system-reviewer-rules")
    # an unsatisfiable rule (a team with no reviewer) comes back with the reason
    page.page.fill("#rule-0-name", "ghosts")
    page.page.select_option("#rule-0-kind", value="team")
    page.page.select_option("#rule-0-team", label="Nobody")
    page.page.click("#ruleset-save")
    error = page.page.locator("#ruleset-error")
    assert "Not saved: this rule set can never be met." in error.inner_text()
    assert "Rule 'ghosts' needs 1 approval(s) from team Nobody" in error.inner_text()
    assert page.page.input_value("#rule-0-name") == "ghosts"  # kept as typed
    page.shot("01-refused")
    # switched to "any reviewer", it saves as version 1
    page.page.select_option("#rule-0-kind", value="any")
    page.page.click("#ruleset-save")
    current = page.page.locator("#ruleset-current")
    current.wait_for()
    assert "Version 1, saved by admin" in current.inner_text()
    assert "1 approval(s) from any independent reviewer" in current.inner_text()
    page.shot("02-saved")
    assert rules.current(system.pk).version == 1
    # the refused save is a 400 page on purpose (Chromium logs it); nothing else went wrong
    others = [p for p in page.problems if "status of 400" not in p]
    assert others == [], page.problems
    page.close()


def test_reviewer_confirms_an_emergency_with_the_button(
    live_server, browser, monkeypatch, engineer, reviewer
):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="high")
    change = awaiting_review(
        make_change(author=engineer, system=system, change_type="emergency"), engineer
    )
    url = f"/changes/{change.pk}/"
    author = Watched(browser, live_server.url, JOURNEY)
    author.login("engineer")
    author.goto(url)
    assert "not yet confirmed" in author.page.locator("#emergency").inner_text()
    assert author.page.locator("#confirm-emergency").count() == 0
    rev = Watched(browser, live_server.url, JOURNEY)
    rev.login("reviewer")
    rev.goto(url)
    rev.page.click("#confirm-emergency")
    rev.page.wait_for_selector("#emergency >> text=Emergency confirmed for this content")
    assert rev.page.locator("#confirm-emergency").count() == 0
    rev.shot("03-emergency-confirmed")
    assert AuditEvent.objects.filter(verb="change.emergency_confirmed").count() == 1
    assert author.problems == [] and rev.problems == []
    author.close()
    rev.close()
