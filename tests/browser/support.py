"""Shared helpers for the browser tests: the system Chromium, watched pages, screenshots.

Chromium is the system one (``/usr/bin/chromium``), launched with the no-sandbox and
no-background-networking flags; ``playwright install`` is never needed. A ``Watched`` page
collects console errors, uncaught page errors and HTTP 5xx responses in ``problems``, so a
test can fail on any of them. Screenshots go to ``$ARTIFACTS_DIR/screenshots/<journey>/``
(``$ARTIFACTS_DIR`` defaults to ``<repo>/artifacts``, the folder ``.ci/run`` prints).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.factories import PASSWORD

# Playwright's sync API runs an event loop in this thread; the ORM calls tests make between
# browser steps are still synchronous and safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

#: Skip a module when the system Chromium is missing (never download one).
requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="the system Chromium (/usr/bin/chromium) is not installed"
)


#: The viewports the layout checks use: a laptop and a phone.
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


def artifacts_root() -> Path:
    return Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "artifacts")


def screenshots_dir(journey: str) -> Path:
    """``$ARTIFACTS_DIR/screenshots/<journey>/``, created."""
    path = artifacts_root() / "screenshots" / journey
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def launch_browser() -> Iterator:
    """The system Chromium under Playwright's sync API; closed (and ORM connections opened
    while Playwright's loop ran, closed too) on exit."""
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
    """A browser context + page whose console errors, uncaught exceptions and HTTP 5xx
    responses are collected in ``problems``."""

    def __init__(self, browser, base_url: str, journey: str, *, init_script: str | None = None):
        self.context = browser.new_context(viewport={"width": 1360, "height": 900})
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.base_url = base_url
        self.journey = journey
        self.problems: list[str] = []
        self.shots: list[Path] = []
        self._watch(self.page)

    def _watch(self, page):
        page.on("console", lambda message: self._console(message, page))
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("response", self._response)

    def new_tab(self, path: str):
        """A second page in the same session (logged in as the same person), watched too."""
        tab = self.context.new_page()
        tab.set_default_timeout(15_000)
        tab.set_viewport_size(self.page.viewport_size)  # the width a test chose, not the default
        self._watch(tab)
        tab.goto(self.base_url + path)
        return tab

    def _console(self, message, page):
        if message.type == "error":
            self.problems.append(f"console error on {page.url}: {message.text}")

    def _response(self, response):
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def goto(self, path: str):
        response = self.page.goto(self.base_url + path)
        if response is not None and response.status >= 500:
            self.problems.append(f"HTTP {response.status} for {response.url}")
        return response

    def shot(self, label: str) -> Path:
        path = screenshots_dir(self.journey) / f"{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def login(self, username: str, password: str = PASSWORD):
        self.goto("/accounts/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url(re.compile(r"/$"))

    def logout(self):
        self.page.click("button:has-text('Log out')")
        self.page.wait_for_url(re.compile(r"/accounts/login/"))

    def close(self):
        self.context.close()


@contextlib.contextmanager
def watched_pages(browser, base_url: str) -> Iterator:
    """Yields ``new(journey)`` -> a :class:`Watched` page; on exit closes them all, then fails
    on any console error or HTTP 5xx any of them saw (so a test's pages are checked even when
    it asserts nothing about them)."""
    opened: list[Watched] = []

    def new(journey: str) -> Watched:
        watched = Watched(browser, base_url, journey)
        opened.append(watched)
        return watched

    yield new
    problems = [p for w in opened for p in w.problems]
    for watched in opened:
        with contextlib.suppress(Exception):
            watched.close()
    assert problems == [], "\n".join(problems)


@contextlib.contextmanager
def page_opener(browser, base_url: str, journey: str) -> Iterator:
    """Yields ``open_(username, width)`` -> a logged-in :class:`Watched` page at that viewport
    width ("laptop" or "phone"), checked as :func:`watched_pages` checks them."""
    with watched_pages(browser, base_url) as new:

        def open_(username: str, width: str) -> Watched:
            watched = new(journey)
            w, h = WIDTHS[width]
            watched.page.set_viewport_size({"width": w, "height": h})
            watched.login(username)
            return watched

        yield open_


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
