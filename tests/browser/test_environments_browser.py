"""Issue 12 in the system Chromium: a reviewer sees the environment timeline on the system
page; an engineer rebases a stale change through the UI, resolving a conflict by editing the
merged text. Screenshots go to ``$ARTIFACTS_DIR/screenshots/environments/``."""

# ruff: noqa: F811 - the fixtures are imported by name and requested by name
from __future__ import annotations

import contextlib

import pytest

from changes import services, states
from changes.models import ChangeRequest
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.conftest import passing_evaluations, recorded_attestations  # noqa: F401
from tests.changes.env_support import approved, new_version, system_with

pytestmark = [
    pytest.mark.browser,
    requires_chromium,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]
JOURNEY = "environments"


@pytest.fixture
def stale_world(team_a, engineer, reviewer):
    """production runs v2 (CR from v1); a second approved change still targets v1."""
    system, _ = system_with(team_a)
    base = new_version(system, "v1", "Be brief.\n")
    theirs = new_version(system, "v2", "Be brief and polite.\n")
    ours = new_version(system, "v3", "Be brief and cite sources.\n")
    first = approved(engineer, reviewer, system, base, theirs)
    services.change_request_deploy(actor=engineer, change_request=first, environment="staging")
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    stale = approved(engineer, reviewer, system, base, ours)
    return system, first, stale, theirs


@pytest.fixture
def watched(live_server):
    opened: list[Watched] = []
    with launch_browser() as browser:

        def open_(username):
            page = Watched(browser, live_server.url, JOURNEY)
            opened.append(page)
            page.login(username)
            return page

        yield open_
        problems = [p for w in opened for p in w.problems]
        for page in opened:
            with contextlib.suppress(Exception):
                page.close()
    assert problems == [], "\n".join(problems)


def test_reviewer_sees_the_environment_timeline(stale_world, watched):
    system, first, _stale, _ = stale_world
    page = watched("reviewer")
    page.goto(f"/systems/{system.pk}/")
    registry = page.page.locator("#env-registry")
    assert "v2" in registry.locator("tr", has_text="production").inner_text()
    timeline = page.page.locator("#env-timeline li")
    assert timeline.count() == 2
    texts = [timeline.nth(i).inner_text() for i in range(2)]
    assert any("production: nothing → v2 via " + first.reference in t for t in texts), texts
    assert any("staging: nothing → v2 via " + first.reference in t for t in texts), texts
    page.shot("system-timeline")


def test_engineer_rebases_a_stale_change_resolving_a_conflict(stale_world, watched):
    _system, _first, stale, theirs = stale_world
    page = watched("engineer")
    page.goto(f"/changes/{stale.pk}/")
    assert "production now runs v2" in page.page.locator("#environments").inner_text()
    page.page.click("#rebase-link")
    page.page.wait_for_selector("#rebase-conflicts")
    merged = page.page.input_value("#id_system_prompt")
    assert "<<<<<<< this change" in merged and ">>>>>>> live" in merged
    page.shot("rebase-conflict")
    page.page.fill("#id_system_prompt", "Be brief, polite, and cite sources.\n")
    page.page.click("#rebase-submit")
    page.page.wait_for_url(f"**/changes/{stale.pk}/")
    assert "rebased onto v2" in page.page.content()
    page.shot("rebased")
    stale = ChangeRequest.objects.get(pk=stale.pk)
    assert stale.base_protocol == theirs and stale.state == states.DRAFT
    assert stale.proposed_protocol.system_prompt == "Be brief, polite, and cite sources.\n"
