"""The page defects of issue 9 (item 7), each seen in the system
Chromium at a laptop width (1280 px) and a phone width (390 px).

The browser is shared by the module; the later tests check several defects per session (one
per role and width). The PDF's own layout (audit-trail columns, readable policy values) is not
a browser page: tests/attestations/test_pdf_layout.py checks it on WeasyPrint's layout boxes.
Screenshots go to ``$ARTIFACTS_DIR/screenshots/page-layout/``. Any console error or HTTP 5xx
fails the test.
"""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from attestations import services as att_services
from attestations.models import Attestation
from changes import services, states
from changes.models import AuditEvent, ChangeRequest, ProtocolVersion
from evaluations import suite_services
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.browser.support import (
    WIDTHS,
    Watched,
    inside_viewport_horizontally,
    launch_browser,
    no_horizontal_scroll,
    page_opener,
    requires_chromium,
)
from tests.changes.test_ui_pages import change_in_state, system_with_versions
from tests.evaluations.conftest import suite_text
from tests.evaluations.test_views import fill_samples, make_run
from tests.factories import make_change

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]
JOURNEY = "page-layout"


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as instance:
        yield instance


@pytest.fixture
def open_page(browser, live_server):
    """``open_page(user, path, width)`` -> a logged-in Watched page at that viewport width."""
    with page_opener(browser, live_server.url, JOURNEY) as open_:

        def open_at(username: str, path: str, width: str) -> Watched:
            watched = open_(username, width)
            watched.goto(path)
            return watched

        yield open_at


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


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_deploy_is_a_labelled_choice_with_a_confirmation(
    open_page, engineer, reviewer, passing_evaluation, signing_key, enqueued, width
):
    # given an approved change
    system, *_ = system_with_versions(engineer.teams.first(), name="support-assistant")
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer, system=system)
    watched = open_page("engineer", f"/changes/{change.pk}/", width)
    page = watched.page
    # the environment is a select with a visible label, in view
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
    watched.shot(f"deploy-confirm-{width}")
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
    # the planned-power table fits its card, on a laptop and on a phone
    suite = suite_services.suite_create(
        actor=engineer, text=suite_text(name="pii-redaction", scenarios=2, epochs=2), fmt="json"
    )
    watched = open_page("engineer", f"/evaluations/suites/{suite.pk}/", "phone")
    for width in ("phone", "laptop"):
        page = watched.page
        page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
        table = page.locator(".eval-power")
        assert inside_viewport_horizontally(page, table), width
        assert table.evaluate("el => el.scrollWidth <= el.parentElement.clientWidth"), width
        assert no_horizontal_scroll(page), width


#: Page script: choose ``proposed`` then ``base`` at once, in one task, so the second choice
#: is made while the reload for the first is still in flight.
CHOOSE_BOTH_AT_ONCE = """([proposed, base]) => {
    for (const [id, value] of [['id_proposed_protocol', proposed], ['id_base_protocol', base]]) {
        const select = document.getElementById(id);
        select.value = value;
        select.dispatchEvent(new Event('change', {bubbles: true}));
    }
}"""

#: Page script: the moment htmx swaps in the version selects of another system, choose
#: ``proposed`` and ``base`` on them, synchronously (a MutationObserver callback runs right
#: after the swap, before htmx's settle delay). Selects wired one by one only got their htmx
#: listener after that delay, so such a choice sent no request and no warning ever came.
CHOOSE_RIGHT_AFTER_THE_SWAP = """([proposed, base]) => {
    const parent = document.getElementById('protocol-fields').parentElement;
    new MutationObserver((records, observer) => {
        const select = document.getElementById('id_base_protocol');
        if (!select || !select.querySelector(`option[value="${base}"]`)) return;
        observer.disconnect();
        document.getElementById('id_proposed_protocol').value = proposed;
        select.value = base;
        select.dispatchEvent(new Event('change', {bubbles: true}));
    }).observe(parent, {childList: true});
}"""


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_the_backwards_warning_appears_as_soon_as_it_is_chosen(open_page, engineer, width):
    # given the new-change form, versions oldest first, v1 -> v2 by default, no warning
    team = engineer.teams.first()
    system, v1, v2 = system_with_versions(team, name="access-review-agent")
    other, w1, w2 = system_with_versions(team, name="claims-triage")
    watched = open_page("engineer", f"/changes/new/?system={system.pk}", width)
    page = watched.page
    assert page.locator("#id_base_protocol option").all_inner_texts()[1].startswith("v1")
    assert page.locator("#id_base_protocol").input_value() == str(v1.pk)
    assert page.locator("#id_proposed_protocol").input_value() == str(v2.pk)
    assert page.locator("#direction-note").count() == 0

    # when the engineer picks v1 as proposed and v2 as base faster than the server answers
    with page.expect_response(lambda r: f"base_protocol={v2.pk}" in r.url):
        page.evaluate(CHOOSE_BOTH_AT_ONCE, [str(v1.pk), str(v2.pk)])
    # then both choices are kept and the form says the change goes backwards
    page.wait_for_selector("#direction-note")
    assert "goes backwards" in page.locator("#direction-note").inner_text()
    assert page.locator("#id_base_protocol").input_value() == str(v2.pk)
    assert page.locator("#id_proposed_protocol").input_value() == str(v1.pk)
    assert inside_viewport_horizontally(page, page.locator("#direction-note"))
    assert no_horizontal_scroll(page)
    watched.shot(f"backwards-warning-{width}")

    # when they switch system and choose backwards on its selects the instant they arrive
    page.evaluate(CHOOSE_RIGHT_AFTER_THE_SWAP, [str(w1.pk), str(w2.pk)])
    with page.expect_response(
        lambda r: "part=direction" in r.url and f"base_protocol={w2.pk}" in r.url, timeout=10_000
    ):
        page.select_option("#id_system", str(other.pk))
    # then that choice counts too: the warning names the other system's versions
    page.locator("#direction-note", has_text="rollback").wait_for()
    assert page.locator("#id_base_protocol").input_value() == str(w2.pk)
    assert page.locator("#id_proposed_protocol").input_value() == str(w1.pk)

    # and swapping them back forward takes the warning away again
    with page.expect_response(re.compile(r"/changes/protocol-options/")):
        page.select_option("#id_base_protocol", str(w1.pk))
    page.wait_for_selector("#direction-note", state="detached")


# --- the rest of issue 9 item 7, grouped: one test per role and width, several pages each ---
# The test-client tests in tests/changes/test_ui_page_defects.py and
# tests/evaluations/test_views_legends.py check the HTML; these check what a person sees.


def all_requests_stay_home(watched, requests: list[str]) -> list[str]:
    """The requests ``requests`` recorded that left the live server (fonts, CDNs...)."""
    return [url for url in requests if not url.startswith((watched.base_url, "data:", "blob:"))]


def in_view_or_in_its_tables_scroll(page, locator, width: str) -> bool:
    """At 1280 px in view as the page opens; on a phone a wide table (eight columns) scrolls
    sideways inside its card (the page itself does not), so there in view once scrolled to."""
    if width == "laptop":
        return inside_viewport_horizontally(page, locator)
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTHS[width][0]


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_the_auditors_pages(open_page, deployed_change, engineer, auditor, width):
    # given a deployed change with ready attestations, a draft with none, a failed
    # evaluation with long reasons, and two verifications of the PDF: one intact, one tampered
    draft = change_in_state(engineer, states.DRAFT, title="A draft with no attestation")
    failed = change_in_state(engineer, states.EVALUATING, title="A failed evaluation")
    reasons = [
        f"Reason {i}: " + "the unmonitored compliance bound is too low " * 4 for i in range(4)
    ]
    services.change_request_record_verdict(
        change_id=failed.pk, content_sha256=failed.content_sha256, passed=False, reasons=reasons
    )
    pdf = bytes(Attestation.objects.filter(change=deployed_change).order_by("pk").last().pdf)
    att_services.verify_upload(actor=auditor, pdf_bytes=pdf, filename="good.pdf", source="ui")
    tampered = pdf[:2000] + bytes([pdf[2000] ^ 0xFF]) + pdf[2001:]
    att_services.verify_upload(actor=auditor, pdf_bytes=tampered, filename="bad.pdf", source="ui")

    # "All changes": a PDF link, in view, only where an attestation is ready
    watched = open_page("auditor", reverse("audit-changes"), width)
    page = watched.page
    row = page.locator("tr", has_text=deployed_change.title).first
    link = row.locator("a:has-text('PDF')")
    assert link.count() == 1 and link.is_visible()
    assert in_view_or_in_its_tables_scroll(page, link, width)
    draft_row = page.locator("tr", has_text=draft.title)
    assert draft_row.count() == 1 and draft_row.locator("a:has-text('PDF')").count() == 0
    assert page.locator(f"a[href$='/changes/{draft.pk}/attestation.pdf']").count() == 0
    assert no_horizontal_scroll(page)
    watched.shot(f"all-changes-{width}")

    # the audit log: each verification shows its result and the file; objects read as labels
    watched.goto(reverse("audit-log"))
    text = page.locator("main").inner_text()
    rows = page.locator("tr", has=page.locator("code", has_text="attestation.verified"))
    facts = []
    for i in range(rows.count()):
        pairs = rows.nth(i).locator(".audit-facts .kvpair").all_inner_texts()
        facts.append(dict(pair.split(":", 1) for pair in pairs))
    facts = {f["file"].strip(): {k: v.strip() for k, v in f.items()} for f in facts}
    assert set(facts) == {"good.pdf", "bad.pdf"}, facts
    assert facts["good.pdf"]["outcome"] == "valid"
    assert re.fullmatch(r"not valid \(\d+ checks? failed\)", facts["bad.pdf"]["outcome"])
    assert f"of {deployed_change.reference}" in text
    assert "attestations.attestation:" not in text
    label = page.locator(f"a:has-text('of {deployed_change.reference}')").first
    assert in_view_or_in_its_tables_scroll(page, label, width)
    assert no_horizontal_scroll(page)
    watched.shot(f"audit-log-{width}")

    # the timeline lists every reason whole, in view, not clipped
    watched.goto(f"/changes/{failed.pk}/")
    for reason in reasons:
        item = page.locator("#timeline li li", has_text=reason.strip()[:40]).first
        assert item.inner_text().strip() == reason.strip()
        assert item.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        assert inside_viewport_horizontally(page, item)
    assert no_horizontal_scroll(page)
    watched.shot(f"timeline-reasons-{width}")


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_the_engineers_pages(open_page, engineer, width):
    system, v1, v2 = system_with_versions(engineer.teams.first(), name="claims-triage")
    draft = change_in_state(engineer, states.DRAFT, system=system, rationale="One.\n\nTwo.")

    # the change form links the suite upload page, in view
    watched = open_page("engineer", "/changes/new/", width)
    page = watched.page
    upload = page.locator(f"a[href='{reverse('suite-upload')}']:has-text('Upload a suite')").last
    assert upload.is_visible() and inside_viewport_horizontally(page, upload)
    assert "through the API" not in page.locator("main").inner_text()
    assert no_horizontal_scroll(page)

    # the edit form: the version selects reload (the backwards warning comes and goes), and
    # saving after a title change logs the title alone
    watched.goto(reverse("change-edit", args=[draft.pk]))
    with page.expect_response(lambda r: "/changes/protocol-options/" in r.url):
        page.select_option("#id_proposed_protocol", str(v1.pk))
    with page.expect_response(lambda r: f"base_protocol={v2.pk}" in r.url):
        page.select_option("#id_base_protocol", str(v2.pk))
    page.wait_for_selector("#direction-note")
    for select, value in (("#id_base_protocol", v1.pk), ("#id_proposed_protocol", v2.pk)):
        with page.expect_response(lambda r: "/changes/protocol-options/" in r.url):
            page.select_option(select, str(value))
        page.locator(f"{select} option[value='{value}']:checked").wait_for(state="attached")
    page.wait_for_selector("#direction-note", state="detached")
    page.fill("#id_title", "A sharper title")
    page.click("button:has-text('Save changes')")
    page.wait_for_url(re.compile(rf"/changes/{draft.pk}/$"))
    event = AuditEvent.objects.filter(verb="change.edited", object_id=str(draft.pk)).get()
    assert event.data["fields"] == ["title"]
    draft.refresh_from_db()
    assert draft.rationale == "One.\n\nTwo." and draft.title == "A sharper title"

    # a protocol version from the UI: the form starts from the newest text and files v3
    watched.goto(reverse("protocol-create", args=[system.pk]))
    assert v2.body in page.locator("#id_body").input_value()
    assert no_horizontal_scroll(page)
    page.fill("#id_version", f"v3-{width}")
    page.click("button:has-text('Add version')")
    page.wait_for_url(re.compile(rf"/systems/{system.pk}/protocols/\d+/$"))
    assert ProtocolVersion.objects.filter(system=system, version=f"v3-{width}").exists()

    # a run page: legends under both tables, in view; the navigation marks "Changes"
    suite = suite_services.suite_create(
        actor=engineer, text=suite_text(name=f"pii-{width}", scenarios=2, epochs=2), fmt="json"
    )
    run = make_run(make_change(author=engineer, system=system, suites=[suite.pk]), suite)
    fill_samples(run)
    watched.goto(f"/evaluations/runs/{run.pk}/")
    for legend in ("#rates-legend", "#scenario-legend"):
        assert page.locator(legend).is_visible()
        assert inside_viewport_horizontally(page, page.locator(legend))
    assert "AF reasoning (alignment-faking reasoning)" in page.locator("#rates-legend").inner_text()
    assert page.locator(".mainnav a[aria-current=page]").all_inner_texts() == ["Changes"]
    assert no_horizontal_scroll(page)
    watched.shot(f"run-legends-{width}")

    # the API docs load nothing from a third party (no Google Fonts, no CDN)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    watched.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=20_000)
    page.wait_for_load_state("networkidle")
    assert requests and all_requests_stay_home(watched, requests) == []
    assert page.request.get(watched.base_url + "/api/redoc/").status == 404  # Redoc is gone
