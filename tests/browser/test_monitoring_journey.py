"""Live monitoring in a real browser: a reviewer works through the review queue; the
discrepancy incident a faker stream opened reaches the owners' inbox and is on the system
page; an engineer files a rollback change from it. Screenshots go to
``$ARTIFACTS_DIR/screenshots/monitoring/``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from changes.models import ChangeRequest
from monitoring import grading
from monitoring.models import Incident, ReviewConfig, ReviewItem
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.monitoring import conftest as live
from tests.monitoring.conftest import evaluated, store

pytestmark = [pytest.mark.browser, requires_chromium]
JOURNEY = "monitoring"
# The monitoring fixtures (a deployed change and its monitor), shared with tests/monitoring.
deployed = live.deployed
monitor = live.monitor


@pytest.fixture
def browser():
    with launch_browser() as instance:
        yield instance


def fits_a_phone(page) -> None:
    """No sideways scrolling at the current (phone) width; names what sticks out if any."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect()"
        ".right > document.documentElement.clientWidth + 0.5).map(e => e.tagName + '.' + "
        "e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 12)"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px: {wide}"


def test_review_queue_incident_and_rollback(
    live_server, browser, monitor, deployed, engineer, reviewer
):
    # given a faker stream graded against an evaluated rate of 0.90, 3 items sampled
    evaluated(deployed, rate=0.9)
    ReviewConfig.objects.create(system=deployed.system, fraction=0.01)
    rng = np.random.default_rng(8)
    store(deployed, ["NEEDS_SECOND_APPROVER" if u < 0.6 else "approve" for u in rng.random(300)])
    grading.grade_pending()
    sampled = ReviewItem.objects.count()
    assert sampled > 0
    incident = Incident.objects.get(kind="discrepancy")

    # when the reviewer works through the queue
    who = Watched(browser, live_server.url, JOURNEY)
    who.login("reviewer")
    page = who.page
    who.goto(f"/monitoring/systems/{deployed.system_id}/review/")
    who.shot("01-review-queue")
    for i in range(sampled):
        page.check("input[name=verdict][value=override]" if i == 0 else "input[value=agree_new]")
        page.fill("textarea[name=comment]", "I would have asked for a second approver.")
        page.click("button:has-text('Record review')")
        page.wait_for_selector("text=Review recorded.")
    assert page.locator("text=Nothing for you to review").is_visible()
    assert not ReviewItem.objects.filter(reviewed_at__isnull=True).exists()
    who.logout()
    who.close()

    # then the engineer, told of the incident in the inbox (the fan-out the notification
    # worker runs for incident.opened), sees it on the system page and files a rollback
    from changes.models import AuditEvent
    from reviews import services as review_services

    opened = AuditEvent.objects.get(verb="incident.opened", object_id=str(incident.pk))
    review_services.fan_out(event_id=opened.pk)
    eng = Watched(browser, live_server.url, JOURNEY)
    eng.login("engineer")
    page = eng.page
    eng.goto("/reviews/inbox/")
    page.click(f"a:has-text('Incident opened on {deployed.system.name}')")
    page.wait_for_url(re.compile(rf"/monitoring/incidents/{incident.pk}/$"))
    # the system's live page (charts included), the queue and the incident fit a phone
    page.set_viewport_size({"width": 390, "height": 844})
    eng.goto(f"/monitoring/systems/{deployed.system_id}/")
    assert page.locator("svg .live-band").count() >= 1
    fits_a_phone(page)
    for path in (f"/monitoring/systems/{deployed.system_id}/review/",
                 f"/monitoring/incidents/{incident.pk}/"):  # fmt: skip
        eng.goto(path)
        fits_a_phone(page)
    eng.shot("02a-monitoring-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    eng.goto(f"/systems/{deployed.system_id}/")
    page.click(f"a:has-text('INC-{incident.pk}')")
    page.wait_for_url(re.compile(rf"/monitoring/incidents/{incident.pk}/$"))
    eng.shot("02-incident")
    page.click("#file-rollback")
    page.wait_for_url(re.compile(r"/changes/new/"))
    assert page.input_value("#id_base_protocol") == str(deployed.proposed_protocol_id)
    assert page.input_value("#id_proposed_protocol") == str(deployed.base_protocol_id)
    page.fill("#id_title", "Roll back: live rate below the evaluated rate")
    page.fill("#id_rationale", f"INC-{incident.pk}: the live new-protocol rate is too low.")
    page.fill("#id_test_plan", "Re-run the suite on the previous version.")
    page.click("button:has-text('File as draft')")
    page.wait_for_url(re.compile(r"/changes/\d+/$"))
    eng.shot("03-rollback-filed")
    rollback = ChangeRequest.objects.get(title="Roll back: live rate below the evaluated rate")
    assert rollback.base_protocol_id == deployed.proposed_protocol_id
    assert rollback.proposed_protocol_id == deployed.base_protocol_id
    assert eng.problems == [] and who.problems == []
    eng.close()
