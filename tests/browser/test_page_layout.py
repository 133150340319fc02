"""The page defects of issue 9 (item 7) that are about layout and visibility, in the system
Chromium at a laptop width (1280 px) and a phone width (390 px).

One page load per check; the browser is shared by the module. Screenshots go to
``$ARTIFACTS_DIR/screenshots/page-layout/``. Any console error or HTTP 5xx fails the test.
"""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import contextlib
import re

import pytest

from attestations.models import Attestation
from changes import services, states
from changes.models import ChangeRequest
from evaluations import services as eval_services
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.test_ui_pages import change_in_state, system_with_versions
from tests.evaluations.conftest import suite_text

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]
JOURNEY = "page-layout"
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as instance:
        yield instance


@pytest.fixture
def open_page(browser, live_server):
    """``open_page(user, path, width)`` -> a logged-in Watched page at that viewport width."""
    opened: list[Watched] = []

    def open_(username: str, path: str, width: str) -> Watched:
        watched = Watched(browser, live_server.url, JOURNEY)
        opened.append(watched)
        w, h = WIDTHS[width]
        watched.page.set_viewport_size({"width": w, "height": h})
        watched.login(username)
        watched.goto(path)
        return watched

    yield open_
    problems = [p for w in opened for p in w.problems]
    for watched in opened:
        with contextlib.suppress(Exception):
            watched.close()
    assert problems == [], "\n".join(problems)


def no_horizontal_scroll(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def inside_viewport_horizontally(page, locator) -> bool:
    """The element is in view without scrolling sideways: no ancestor clips it either.
    (Never scroll it into view first: that would scroll its overflow container sideways.)"""
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    clipped = locator.evaluate(
        """el => {
            const r = el.getBoundingClientRect();
            for (let p = el.parentElement; p; p = p.parentElement) {
                const s = getComputedStyle(p);
                if (s.overflowX === 'visible') continue;
                const c = p.getBoundingClientRect();
                if (r.left < c.left - 0.5 || r.right > c.right + 0.5) return true;
            }
            return false;
        }"""
    )
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width and not clipped


@pytest.fixture
def deployed_change(engineer, reviewer, auditor, passing_evaluation, signing_key, enqueued):
    """An approved change with a ready v1 attestation, then deployed to production (v2
    rendered too)."""
    row = ready_attestation(engineer, [reviewer])
    change = ChangeRequest.objects.get(pk=row.change_id)
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    render_pending()
    assert Attestation.objects.filter(change=change, status=Attestation.READY).count() == 2
    return change


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_the_auditor_sees_the_pdf_download_and_the_deployed_gate(open_page, deployed_change, width):
    # when the auditor opens the deployed change
    watched = open_page("auditor", f"/changes/{deployed_change.pk}/", width)
    page = watched.page
    # then every PDF download is in view without scrolling sideways
    links = page.locator("#attestation-panel a:has-text('Download PDF')")
    assert links.count() == 2
    for i in range(links.count()):
        assert inside_viewport_horizontally(page, links.nth(i)), f"PDF link {i} off-screen"
    assert no_horizontal_scroll(page)
    # and the gate card says where, when and by whom, not a red "Not deployable"
    gate = page.locator("#gate")
    assert re.search(r"Deployed to production at \d{4}-\d\d-\d\d \d\d:\d\d UTC by engineer\.",
                     gate.inner_text())  # fmt: skip
    assert "Not deployable" not in gate.inner_text()
    assert inside_viewport_horizontally(page, gate.locator(".deployed-line"))
    watched.shot(f"change-auditor-{width}")


def test_deploy_is_a_labelled_choice_with_a_confirmation(
    open_page, engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given an approved change
    system, *_ = system_with_versions(engineer.teams.first(), name="support-assistant")
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer, system=system)
    watched = open_page("engineer", f"/changes/{change.pk}/", "phone")
    page = watched.page
    # the environment is a select with a visible label, in view on a phone
    select = page.get_by_label("Environment", exact=True)
    assert select.evaluate("el => el.tagName") == "SELECT"
    assert inside_viewport_horizontally(page, page.locator("label[for=id_environment]"))
    # when the engineer chooses production (the last environment of the path) and presses Deploy…
    select.select_option("production")
    page.click("button:has-text('Deploy…')")
    page.wait_for_url(re.compile(r"/deploy/confirm/"))
    # then nothing is deployed yet, and the page names what goes live
    assert ChangeRequest.objects.get(pk=change.pk).state == states.APPROVED
    assert page.locator("#confirm-system").inner_text() == "support-assistant"
    assert page.locator("#confirm-version").inner_text() == change.proposed_protocol.version
    assert page.locator("#confirm-environment").inner_text() == "production"
    assert no_horizontal_scroll(page)
    watched.shot("deploy-confirm-phone")
    # when they confirm, it is deployed to production
    page.click(f"button:has-text('Deploy {change.proposed_protocol.version} to production')")
    page.wait_for_url(re.compile(rf"/changes/{change.pk}/$"))
    assert ChangeRequest.objects.get(pk=change.pk).state == states.DEPLOYED
    assert "Deployed to production at" in page.locator("#gate").inner_text()


def test_top_bar_power_table_and_timeline(open_page, admin_user, engineer):
    # the admin's top bar is one row at 1280 px: brand, every link and the user menu
    watched = open_page("admin", "/", "laptop")
    page = watched.page
    assert page.locator(".topbar").bounding_box()["height"] < 60
    last = page.locator(".mainnav a").last.bounding_box()
    menu = page.locator(".usermenu").bounding_box()
    assert last["x"] + last["width"] <= menu["x"]  # no overlap either
    assert page.locator(".mainnav a:has-text('Admin')").is_visible()
    watched.shot("topbar-admin-laptop")
    # the planned-power table fits its card on a phone
    suite = eval_services.suite_create(
        actor=engineer, text=suite_text(name="pii-redaction", scenarios=2, epochs=2), fmt="json"
    )
    watched = open_page("engineer", f"/evaluations/suites/{suite.pk}/", "phone")
    page = watched.page
    table = page.locator(".eval-power")
    assert inside_viewport_horizontally(page, table)
    assert table.evaluate("el => el.scrollWidth <= el.parentElement.clientWidth")
    assert no_horizontal_scroll(page)


#: Page script for the backwards-warning test: the moment htmx swaps the version selects in,
#: choose ``base`` on the new select, synchronously, before htmx's settle delay has passed.
#: (A MutationObserver callback runs right after the swap, in the same task.) Selects wired
#: one by one only get their htmx listener after the settle delay, so this choice sent no
#: request and the warning never came: the regression this test pins.
CHOOSE_BASE_RIGHT_AFTER_THE_SWAP = """base => {
    const parent = document.getElementById('protocol-fields').parentElement;
    new MutationObserver((records, observer) => {
        const select = document.getElementById('id_base_protocol');
        if (!select || select.value === base) return;
        observer.disconnect();
        select.value = base;
        select.dispatchEvent(new Event('change', {bubbles: true}));
    }).observe(parent, {childList: true});
}"""


def test_the_backwards_warning_appears_as_soon_as_it_is_chosen(open_page, engineer):
    # given the new-change form, versions oldest first, v1 -> v2 by default, no warning
    system, v1, v2 = system_with_versions(engineer.teams.first(), name="access-review-agent")
    watched = open_page("engineer", f"/changes/new/?system={system.pk}", "phone")
    page = watched.page
    assert page.locator("#id_base_protocol option").all_inner_texts()[1].startswith("v1")
    assert page.locator("#id_base_protocol").input_value() == str(v1.pk)
    assert page.locator("#id_proposed_protocol").input_value() == str(v2.pk)
    assert page.locator("#direction-note").count() == 0
    # when the engineer proposes v1 and, as soon as the selects are reloaded, takes v2 as base
    page.evaluate(CHOOSE_BASE_RIGHT_AFTER_THE_SWAP, str(v2.pk))
    backwards = f"base_protocol={v2.pk}"
    with page.expect_response(
        lambda r: "/changes/protocol-options/" in r.url and backwards in r.url, timeout=10_000
    ):
        page.select_option("#id_proposed_protocol", str(v1.pk))
    # then both choices are kept and the form says the change goes backwards
    page.wait_for_selector("#direction-note")
    assert "goes backwards" in page.locator("#direction-note").inner_text()
    assert page.locator("#id_base_protocol").input_value() == str(v2.pk)
    assert page.locator("#id_proposed_protocol").input_value() == str(v1.pk)
    assert inside_viewport_horizontally(page, page.locator("#direction-note"))
    assert no_horizontal_scroll(page)
    watched.shot("backwards-warning-phone")
    # and swapping them back forward takes the warning away again
    with page.expect_response(re.compile(r"/changes/protocol-options/")):
        page.select_option("#id_base_protocol", str(v1.pk))
    page.wait_for_selector("#direction-note", state="detached")
