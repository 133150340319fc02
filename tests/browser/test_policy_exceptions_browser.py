"""Policy exceptions on the change page, in the system Chromium (docs/GATE.md, "Policy
exceptions"): the author asks to loosen one gate threshold of a high system (threshold,
looser value, reason), an admin approves, an independent reviewer approves, and the page
shows the exception in effect; one person who is both admin and reviewer cannot give both
approvals, and the page says why. Each at a laptop and a phone width (390 px).
Screenshots go to ``$ARTIFACTS_DIR/screenshots/policy-exceptions/``.
"""

from __future__ import annotations

import re

import pytest

from changes import services, states
from evaluations import exception_selectors, exception_services
from evaluations.models import PolicyException
from tests.browser.support import (
    Watched,
    inside_viewport_horizontally,
    launch_browser,
    no_horizontal_scroll,
    page_opener,
    requires_chromium,
    screenshots_dir,
)
from tests.changes.conftest import passing_evaluations  # noqa: F401 - fixture
from tests.factories import SystemFactory, UserFactory, make_change

pytestmark = [
    pytest.mark.browser,
    requires_chromium,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("passing_evaluations"),
]
JOURNEY = "policy-exceptions"
REASON = "The redaction cue is phrased the same in both conditions; the gap is known noise."


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as instance:
        yield instance


@pytest.fixture
def open_as(browser, live_server):
    """``open_as(username, width)`` -> a logged-in Watched page at that viewport width; any
    console error or HTTP 5xx on any of them fails the test."""
    with page_opener(browser, live_server.url, JOURNEY) as open_:
        yield open_


@pytest.fixture
def change(team_a, engineer):
    """The engineer's change of a high-criticality system (max_gap floor 0.05) whose
    evaluation failed on the gap: editable in place, so an exception may be requested, and
    out of draft, so reviewers of other teams see it."""
    system = SystemFactory(owner_team=team_a, criticality="high", name="claims-triage")
    change = make_change(author=engineer, system=system)
    services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()
    services.change_request_record_verdict(
        change_id=change.pk,
        content_sha256=change.content_sha256,
        passed=False,
        reasons=["compliance gap 0.12 is above max_gap 0.05"],
    )
    change.refresh_from_db()
    assert change.state == states.EVALUATION_FAILED
    return change


def section(page):
    return page.locator("#policy-exceptions")


def messages(page) -> str:
    box = page.locator("ul.messages")
    return box.inner_text() if box.count() else ""


def fits(page, width: str, *locators) -> None:
    """At the phone width nothing makes the page scroll sideways and each control is in
    view; at any width, the same."""
    assert no_horizontal_scroll(page), width
    for locator in locators:
        for i in range(locator.count()):
            assert inside_viewport_horizontally(page, locator.nth(i)), (width, locator)


def shot_section(page, label: str) -> None:
    """The section alone, beside the full-page shots: the part a reviewer looks at."""
    section(page).screenshot(path=str(screenshots_dir(JOURNEY) / f"{label}-section.png"))


def open_change(watched: Watched, change) -> None:
    watched.goto(f"/changes/{change.pk}/")
    watched.page.wait_for_selector("#policy-exceptions")


def after_post(watched: Watched, change) -> None:
    watched.page.wait_for_url(re.compile(rf"/changes/{change.pk}/#policy-exceptions$"))


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_requested_in_the_ui_approved_by_an_admin_and_a_reviewer_then_in_effect(
    open_as, change, admin_user, reviewer, width
):
    # given the author on the change page: a request form, nothing requested yet
    author = open_as("engineer", width)
    open_change(author, change)
    page = author.page
    assert "No policy exception was requested." in section(page).inner_text()
    form = page.locator("#policy-exception-form")
    fits(page, width, form.locator("select, input[name=value], textarea, button"))

    # when they ask to loosen max_gap from the high floor 0.05 to 0.2, saying why
    page.select_option("#id_pe_key", "max_gap")
    page.fill("#id_pe_value", "0.2")
    page.fill("#id_pe_reason", REASON)
    author.shot(f"request-filled-{width}")
    shot_section(page, f"request-filled-{width}")
    page.click("#policy-exception-form button[type=submit]")
    after_post(author, change)

    # then the page confirms it and lists it as pending, with no approve button for the author
    exc = PolicyException.objects.get(change=change)
    assert (exc.key, exc.value, exc.floor, exc.reason) == ("max_gap", 0.2, 0.05, REASON)
    assert f"{exc.reference} requested; it needs an admin and a reviewer." in messages(page)
    row = section(page).locator(f"li[data-exception='{exc.pk}']")
    assert row.get_attribute("data-status") == "pending"
    text = row.inner_text()
    assert "max_gap" in text and "0.2 instead of the floor 0.05" in text and REASON in text
    assert "admin: -; reviewer: -" in text
    assert row.locator("[data-approve]").count() == 0
    fits(page, width, row)
    author.shot(f"requested-{width}")

    # when an admin opens the change: only the admin approval is offered to them
    admin = open_as("admin", width)
    open_change(admin, change)
    row = section(admin.page).locator(f"li[data-exception='{exc.pk}']")
    assert row.locator("[data-approve]").all_inner_texts() == ["Approve as admin"]
    fits(admin.page, width, row.locator("[data-approve]"))
    row.locator("[data-approve=admin]").click()
    after_post(admin, change)

    # then it still waits for the reviewer
    assert f"{exc.reference} approved; it needs the other approval." in messages(admin.page)
    row = section(admin.page).locator(f"li[data-exception='{exc.pk}']")
    assert row.get_attribute("data-status") == "pending"
    assert "admin: admin; reviewer: -" in row.inner_text()
    assert row.locator("[data-approve]").count() == 0
    assert exception_selectors.standing_for_policy(change) == []

    # when the independent reviewer (another team) approves
    rev = open_as("reviewer", width)
    open_change(rev, change)
    row = section(rev.page).locator(f"li[data-exception='{exc.pk}']")
    assert row.locator("[data-approve]").all_inner_texts() == ["Approve as independent reviewer"]
    fits(rev.page, width, row.locator("[data-approve]"))
    row.locator("[data-approve=reviewer]").click()
    after_post(rev, change)

    # then the change page shows it in effect, with both approvers, to everyone
    assert f"{exc.reference} in effect." in messages(rev.page)
    author.page.reload()
    for watched in (rev, author):
        row = section(watched.page).locator(f"li[data-exception='{exc.pk}']")
        assert row.get_attribute("data-status") == "in_effect"
        assert row.locator(".tag").inner_text() == "in effect"
        assert "admin: admin; reviewer: reviewer" in row.inner_text()
        assert row.locator("[data-approve]").count() == 0
        fits(watched.page, width, row)
    rev.shot(f"in-effect-{width}")
    shot_section(rev.page, f"in-effect-{width}")
    # and the next submission's runs would take the looser value
    assert [(e["key"], e["value"]) for e in exception_selectors.standing_for_policy(change)] == [
        ("max_gap", 0.2)
    ]


@pytest.fixture
def admin_reviewer(team_b):
    """Both an admin and a reviewer on another team: eligible for either approval, alone."""
    return UserFactory(username="adminrev", roles=["admin", "reviewer"], team=team_b)


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_the_same_person_cannot_give_both_approvals_and_the_page_says_why(
    open_as, change, engineer, admin_reviewer, width
):
    exc = exception_services.policy_exception_request(
        actor=engineer, change_request=change, key="max_gap", value=0.2, reason=REASON
    )
    # given one person who may give either approval, with the change open in two tabs
    watched = open_as("adminrev", width)
    open_change(watched, change)
    first = watched.page
    second = watched.new_tab(f"/changes/{change.pk}/")
    for tab in (first, second):
        buttons = section(tab).locator(f"li[data-exception='{exc.pk}'] [data-approve]")
        assert buttons.all_inner_texts() == ["Approve as admin", "Approve as independent reviewer"]

    # when they approve as admin in the first tab
    section(first).locator("[data-approve=admin]").click()
    after_post(watched, change)
    # then the first tab no longer offers them the reviewer approval
    assert f"{exc.reference} approved; it needs the other approval." in messages(first)
    assert section(first).locator("[data-approve]").count() == 0

    # when they give the reviewer approval too, from the tab opened before
    section(second).locator("[data-approve=reviewer]").click()
    second.wait_for_url(re.compile(rf"/changes/{change.pk}/#policy-exceptions$"))

    # then it is refused, the page says why, and the exception still waits for a reviewer
    said = messages(second)
    assert f"You cannot give the reviewer approval of {exc.reference}." in said
    assert "You gave the admin approval; the reviewer approval needs someone else." in said
    assert inside_viewport_horizontally(second, second.locator("ul.messages li").first)
    assert no_horizontal_scroll(second), width
    row = section(second).locator(f"li[data-exception='{exc.pk}']")
    assert row.get_attribute("data-status") == "pending"
    assert "admin: adminrev; reviewer: -" in row.inner_text()
    second.screenshot(path=str(screenshots_dir(JOURNEY) / f"refused-{width}.png"), full_page=True)
    shot_section(second, f"refused-{width}")
    exc.refresh_from_db()
    assert exc.admin_approver_id == admin_reviewer.pk and exc.reviewer_approver_id is None
    assert exception_selectors.standing_for_policy(change) == []
