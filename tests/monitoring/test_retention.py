"""Retention removes old graded decisions only; rollups, reviewed and ungraded ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.errors import ValidationFailed
from monitoring import grading, services
from monitoring.models import Decision, ReviewConfig, ReviewItem, Rollup

from .conftest import store

pytestmark = pytest.mark.django_db


def test_prune_keeps_what_matters(monitor, deployed):
    ReviewConfig.objects.create(system=deployed.system, fraction=0.0, label_fractions={"legacy": 1})
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 5 + ["I approve."])  # the legacy one is sampled
    grading.grade_pending()
    (old_ungraded,) = store(deployed, ["NEEDS_SECOND_APPROVER"])  # never graded
    Decision.objects.update(received_at=timezone.now() - timedelta(days=500))
    (recent,) = store(deployed, ["NEEDS_SECOND_APPROVER"])
    Decision.objects.filter(pk=recent.pk).update(graded_at=timezone.now(), label="new")
    removed = services.decisions_prune(older_than_days=400)
    assert removed == 5  # the old, graded, unsampled ones
    remaining = set(Decision.objects.values_list("pk", flat=True))
    assert {old_ungraded.pk, recent.pk} <= remaining and len(remaining) == 3
    assert ReviewItem.objects.get().decision_id in remaining
    assert Rollup.objects.get().n == 6
    with pytest.raises(ValidationFailed):
        services.decisions_prune(older_than_days=0)


def test_command(monitor, deployed, capsys):
    call_command("prune_decisions", "--older-than", "30")
    assert "removed 0" in capsys.readouterr().out
