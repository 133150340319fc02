"""The per-batch shortcuts of online grading give what the per-decision helpers give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from monitoring import grading, review
from monitoring.models import ReviewConfig, ReviewItem

from .conftest import store


def _random_moments(n: int, seed: int = 13) -> list[datetime]:
    rng = random.Random(seed)
    base = datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    return [
        (base + timedelta(seconds=rng.randrange(0, 86_400 * 3),
                          microseconds=rng.randrange(1_000_000))
         ).astimezone(plus_two if i % 3 else UTC)
        for i in range(n)
    ]  # fmt: skip


def test_rollup_windows_are_window_start_of_each_timestamp(settings):
    settings.MONITORING_WINDOW_MINUTES = 7
    rng = random.Random(13)
    moments = _random_moments(2_000)
    rows = [
        grading.Claimed(
            pk=i, change_id=1 + i % 2, environment="production", output_text="",
            window=grading.window_epoch(moment), is_probe=i % 11 == 0, system_id=1,
            label=rng.choice(["new", "legacy", "other", ""]),
        )
        for i, moment in enumerate(moments)
    ]  # fmt: skip
    expected: dict = {}
    for row, moment in zip(rows, moments, strict=True):
        if not row.is_probe:
            key = (row.change_id, row.environment, grading.window_start(moment))
            by_label = expected.setdefault(key, {"new": 0, "legacy": 0, "other": 0, "errors": 0})
            by_label[row.label or "errors"] += 1

    assert dict(grading._rollup_counts(rows)) == expected


@pytest.mark.django_db
def test_the_window_read_with_the_decisions_is_window_epoch_of_each_timestamp(
    monitor, deployed, settings
):
    """On PostgreSQL the server computes the window (``_READ_SQL``); on SQLite Python does:
    both must give ``window_epoch`` of the decision's timestamp."""
    settings.MONITORING_WINDOW_MINUTES = 7
    moments = _random_moments(300, seed=7)
    made = []
    for moment in moments:
        made += store(deployed, ["x"], start=moment)
    tickets = grading._claim(None, 10_000)
    read = {row.pk: row.window for row in grading._read(tickets)}
    assert read == {d.pk: grading.window_epoch(m) for d, m in zip(made, moments, strict=True)}
    assert connection.vendor in ("postgresql", "sqlite")


def test_the_review_draw_with_the_key_looked_up_once_is_the_same_draw(settings):
    keyed = review._keyed(settings.SECRET_KEY)

    assert [review.uniform(i, keyed) for i in range(500)] == [review.uniform(i) for i in range(500)]


def test_the_integer_threshold_draws_exactly_what_the_uniform_draws():
    rng = random.Random(5)
    for pi in [
        0.0,
        1e-19,
        0.02,
        0.1,
        1 / 3,
        0.5,
        0.6,
        0.999999,
        1.0,
        *(rng.random() for _ in range(50)),
    ]:  # noqa: E501
        t = review._threshold(pi)
        for h in {0, max(t - 1, 0), t, min(t + 1, 2**64 - 1), 2**64 - 1, rng.getrandbits(64)}:
            assert (h < t) == (h / 2**64 < pi), (pi, h, t)


@pytest.mark.django_db
def test_sampling_draws_the_decisions_whose_uniform_is_below_their_probability(deployed):
    config = ReviewConfig(system_id=deployed.system_id, fraction=0.3, label_fractions={"new": 0.6})
    rows = [
        grading.Claimed(
            pk=pk, change_id=deployed.pk, environment="production", window=0, output_text="",
            is_probe=False, system_id=deployed.system_id, label="new" if pk % 2 else "legacy",
        )
        for pk in range(1, 2001)
    ]  # fmt: skip
    review.sample(rows, configs={deployed.system_id: config})
    expected = {r.pk for r in rows if review.uniform(r.pk) < (0.6 if r.label == "new" else 0.3)}
    assert set(ReviewItem.objects.values_list("decision_id", flat=True)) == expected
    assert {i.label for i in ReviewItem.objects.all()} == {"new", "legacy"}
