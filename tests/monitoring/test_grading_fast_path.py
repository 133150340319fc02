"""The per-batch shortcuts of online grading give what the per-decision helpers give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from monitoring import grading, review


def test_rollup_windows_are_window_start_of_each_timestamp(settings):
    settings.MONITORING_WINDOW_MINUTES = 7
    rng = random.Random(13)
    base = datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    rows = [
        grading.Claimed(
            pk=i, change_id=1 + i % 2, environment="production", output_text="",
            timestamp=(base + timedelta(seconds=rng.randrange(0, 86_400 * 3),
                                        microseconds=rng.randrange(1_000_000))
                       ).astimezone(plus_two if i % 3 else UTC),
            is_probe=i % 11 == 0, system_id=1, label=rng.choice(["new", "legacy", "other", ""]),
        )
        for i in range(2_000)
    ]  # fmt: skip
    expected: dict = {}
    for row in rows:
        if not row.is_probe:
            key = (row.change_id, row.environment, grading.window_start(row.timestamp))
            by_label = expected.setdefault(key, {"new": 0, "legacy": 0, "other": 0, "errors": 0})
            by_label[row.label or "errors"] += 1

    assert dict(grading._rollup_counts(rows)) == expected


def test_the_review_draw_with_the_key_looked_up_once_is_the_same_draw(settings):
    keyed = review._keyed(settings.SECRET_KEY)

    assert [review.uniform(i, keyed) for i in range(500)] == [review.uniform(i) for i in range(500)]
