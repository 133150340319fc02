"""The Content-Security-Policy blocks nothing our own pages need (Chromium reports every
violation as a console error, which ``Watched`` collects), and the page scripts still work
under it (the diff view toggle, htmx, Swagger UI)."""

from __future__ import annotations

import pytest

from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.factories import make_change

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]


def test_pages_run_under_the_policy_without_violations(live_server, admin_user, engineer):
    change = make_change(author=engineer)
    system = change.system
    with launch_browser() as browser:
        watched = Watched(browser, live_server.url, "csp")
        watched.login("engineer")
        for path in (
            "/",
            "/changes/",
            f"/changes/{change.pk}/",
            f"/changes/{change.pk}/edit/",
            "/systems/",
            f"/systems/{system.pk}/protocols/compare/",
            "/evaluations/suites/",
            "/evaluations/suites/new/",
        ):
            response = watched.goto(path)
            assert response is not None and response.status == 200, path
            assert response.headers.get("content-security-policy"), path
        # the change page's script (a static file) still switches the diff view
        watched.goto(f"/changes/{change.pk}/")
        watched.page.click("[data-diff-mode=unified]")
        watched.page.wait_for_selector("[data-diff-view=unified]:not([hidden])")
        # Swagger UI renders from its script file
        watched.goto("/api/docs/")
        watched.page.wait_for_selector("#swagger-ui .info", timeout=20_000)
        watched.close()
        assert watched.problems == []
