"""The attestation's state graph (attestations/states.py), pair by pair: on the data, and on
the database through the one move function every service uses, with its audit event."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from attestations import services, states
from attestations.models import Attestation
from changes.models import AuditEvent
from core.errors import InvalidTransition
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approved_change,
    enqueued,
    passing_evaluation,
    signing_key,
)
from tests.factories import make_change

P, R, D, F, V = states.PENDING, states.RENDERING, states.READY, states.FAILED, states.VOID
ALLOWED = {(P, R), (R, R), (R, D), (R, F), (R, V), (F, P)}
PAIRS = list(itertools.product(states.STATES, repeat=2))


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_every_pair_of_statuses(current, target):
    if (current, target) in ALLOWED:
        assert states.can_transition(current, target)
        action = states.assert_transition(current, target)
        assert action in {"claim", "reclaim", "issue", "fail", "void", "retry"}
        assert states.audit_verb(current, target).startswith("attestation.")
        assert current in states.sources(target)
    else:
        assert not states.can_transition(current, target)
        with pytest.raises(InvalidTransition, match=f"'{current}' cannot move to '{target}'"):
            states.assert_transition(current, target)
        assert current not in states.sources(target)


def test_the_graph_names_the_model_statuses_and_issued_rows_never_move():
    assert set(states.STATES) == {value for value, _ in Attestation.STATUS_CHOICES}
    assert set(Attestation.IN_FLIGHT) == {P, R}
    assert {D, V} == states.TERMINAL
    for done in states.TERMINAL:
        assert not any(states.can_transition(done, other) for other in states.STATES)
    assert states.sources(P) == (F,)  # only a failed row goes back to pending
    assert states.sources(D) == (R,)  # only the claim that rendered it fills it


@pytest.mark.django_db
def test_every_pair_on_the_database_moves_only_along_the_graph_and_audits_each_move(engineer):
    change = make_change(author=engineer)
    stale = timezone.now() - timedelta(days=1)
    for version, (current, target) in enumerate(PAIRS, start=1):
        row = Attestation.objects.create(
            change=change,
            version=version,
            reason="approved",
            content_sha256=change.content_sha256,
            status=current,
            facts={} if current == F else None,
            claimed_at=stale if current == R else None,
        )
        events = AuditEvent.objects.count()

        left = services._move(row, target)

        row = Attestation.objects.defer("pdf", "envelope").get(pk=row.pk)
        if (current, target) in ALLOWED:
            assert left == current and row.status == target, (current, target)
            event = AuditEvent.objects.order_by("-id").first()
            assert AuditEvent.objects.count() == events + 1
            assert event.verb == states.audit_verb(current, target)
            assert event.data["attestation"] == row.pk and event.data["from"] == current
        else:
            assert left is None and row.status == current, (current, target)
            assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_the_reaper_retry_writes_the_same_event_as_the_admin_retry(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, settings, monkeypatch
):
    # given: a render that failed with attempts left
    approved_change(engineer, [reviewer])
    row = Attestation.objects.get()
    settings.ATTESTATION_SIGNING_KEY_FILE = "/nonexistent/key.pem"
    services.attestation_render(attestation_id=row.pk)
    assert Attestation.objects.get(pk=row.pk).status == F
    monkeypatch.setattr(services, "enqueue_render", lambda pk: True)

    # when: the periodic reaper runs
    services.attestation_requeue_stalled()

    # then: the row is pending again and the move is in the audit log, by the reaper
    assert Attestation.objects.get(pk=row.pk).status == P
    retried = AuditEvent.objects.get(verb="attestation.retried")
    assert retried.actor_id is None
    assert retried.data == {"attestation": row.pk, "version": 1, "from": F, "by": "reaper",
                            "attempts": 1}  # fmt: skip
    # and the claim that took it was audited too (one per attempt)
    assert AuditEvent.objects.filter(verb="attestation.rendering").count() == 1
