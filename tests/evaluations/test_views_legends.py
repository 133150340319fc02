"""The run page explains its shorthand, and sits under "Changes" in the main navigation."""

from __future__ import annotations

import pytest

from tests.evaluations.test_views import browser, change, fill_samples, make_run, suite  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_run_page_has_legends_and_highlights_changes(engineer, change, suite):  # noqa: F811
    # given a completed run with samples
    run = make_run(change, suite)
    fill_samples(run)
    # when the engineer opens it
    html = browser(engineer).get(f"/evaluations/runs/{run.pk}/").content.decode()
    # then "AF reasoning" and the "new / legacy / other" cells are explained under their tables
    assert 'id="rates-legend"' in html and "AF reasoning (alignment-faking reasoning)" in html
    assert 'id="scenario-legend"' in html
    assert '15</span> / <span class="bad-text">0</span> / 0 means 15 replies' in html
    # and the main navigation marks "Changes", not "Suites", as the current section
    assert '<a href="/changes/" aria-current="page">Changes</a>' in html
    assert 'aria-current="page">Suites</a>' not in html
