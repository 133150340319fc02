"""Inside one deploy-gate computation the evaluation rules share their reads
(``changes.gate_context``): the linked suites and the current runs are read once, and the
evaluation digest is computed from those runs, equal to the digest read on its own."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from changes import gate_context
from changes import selectors as change_selectors
from changes.models import ChangeRequest
from evaluations import selectors
from evaluations.models import EvaluationRun
from tests.evaluations.conftest import drain

pytestmark = pytest.mark.django_db


def _reads(ctx, table: str) -> int:
    return sum(
        1
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    )


def test_gate_reads_suites_and_runs_once_and_the_digest_agrees(submitted_change, engineer):
    change = submitted_change("compliant")
    drain(EvaluationRun.objects.get(change=change))
    change = ChangeRequest.objects.select_related("system").get(pk=change.pk)
    alone = selectors.evaluation_digest(change)
    assert alone  # a completed run: the digest is not empty
    with gate_context.computing(change):
        assert selectors.evaluation_digest(change) == alone
    with CaptureQueriesContext(connection) as ctx, gate_context.computing(change):
        # every evaluation rule of the gate, as one computation asks them
        assert selectors.gate_reasons(change) == []
        assert selectors.acknowledgement_reasons(change) == []
        assert selectors.evaluation_digest(change) == alone
        assert len(selectors.current_runs(change)) == 1
    assert _reads(ctx, "evaluations_evaluationrun") == 1
    assert _reads(ctx, "evaluations_suite") == 1
    with CaptureQueriesContext(connection) as ctx:
        change_selectors.gate(change, user=engineer)  # digest and acknowledgement rule
    assert _reads(ctx, "evaluations_evaluationrun") == 1
