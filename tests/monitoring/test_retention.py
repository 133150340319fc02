"""Retention removes old graded decisions only; rollups, reviewed and ungraded ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.errors import ValidationFailed
from monitoring import grading, services
from monitoring.models import Decision, GradeBatch, GradeTicket, ReviewConfig, ReviewItem, Rollup
from monitoring.selectors import labels_for

from .conftest import store

pytestmark = pytest.mark.django_db


def test_prune_keeps_what_matters(monitor, deployed):
    ReviewConfig.objects.create(system=deployed.system, fraction=0.0, label_fractions={"legacy": 1})
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 5 + ["I approve."])  # the legacy one is sampled
    (recent,) = store(deployed, ["NEEDS_SECOND_APPROVER"])
    grading.grade_pending()
    (old_ungraded,) = store(deployed, ["NEEDS_SECOND_APPROVER"])  # never graded: a ticket
    long_ago = timezone.now() - timedelta(days=500)
    Decision.objects.exclude(pk=recent.pk).update(received_at=long_ago)
    GradeBatch.objects.update(graded_at=long_ago)
    GradeBatch.objects.create(
        change=deployed,
        graded_at=timezone.now(),
        first_id=recent.pk,
        last_id=recent.pk,
        ids=[recent.pk],
        labels="n",
    )  # fmt: skip - a recent grade-log row, which retention keeps
    removed = services.decisions_prune(older_than_days=400)
    assert removed == 5  # the old, graded, unsampled ones
    remaining = set(Decision.objects.values_list("pk", flat=True))
    assert {old_ungraded.pk, recent.pk} <= remaining and len(remaining) == 3
    item = ReviewItem.objects.get()
    assert item.decision_id in remaining and item.label == "legacy"  # keeps its own label
    assert GradeTicket.objects.get().ids == [old_ungraded.pk]
    assert Rollup.objects.get().n == 7
    # The grade log is pruned with the same retention: only the recent row is left.
    assert list(GradeBatch.objects.values_list("ids", flat=True)) == [[recent.pk]]
    assert labels_for(remaining) == {recent.pk: ("new", "")}
    with pytest.raises(ValidationFailed):
        services.decisions_prune(older_than_days=0)


def test_command(monitor, deployed, capsys):
    call_command("prune_decisions", "--older-than", "30")
    assert "removed 0" in capsys.readouterr().out
