"""The Attestation row: versioned per change, immutable once ready (in Python and in SQL)."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from attestations.models import Attestation
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def _row(change, version=1, **fields):
    return Attestation.objects.create(
        change=change,
        version=version,
        reason="approved",
        content_sha256=change.content_sha256,
        **fields,
    )


def test_versions_are_unique_per_change(engineer):
    change = make_change(author=engineer)
    _row(change, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        _row(change, 1)
    _row(change, 2)
    other = make_change(author=engineer)
    _row(other, 1)  # another change counts from 1 again
    assert Attestation.objects.filter(change=change).count() == 2


def test_version_zero_is_refused(engineer):
    change = make_change(author=engineer)
    with pytest.raises(IntegrityError), transaction.atomic():
        _row(change, 0)


def test_save_refuses_to_update_an_existing_row(engineer):
    row = _row(make_change(author=engineer))
    row.error = "edited"
    with pytest.raises(ValueError, match="immutable"):
        row.save()
    row.refresh_from_db()
    assert row.error == ""


def test_the_database_refuses_any_update_of_a_ready_row(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given: a rendered attestation
    row = ready_attestation(engineer, [reviewer])
    pdf_sha = row.pdf_sha256

    # when: anyone updates it with SQL, even through the ORM's update()
    with pytest.raises(DatabaseError), transaction.atomic():
        Attestation.objects.filter(pk=row.pk).update(pdf_sha256="0" * 64)
    with pytest.raises(DatabaseError), transaction.atomic():
        Attestation.objects.filter(pk=row.pk).update(status=Attestation.PENDING)

    # then: it is unchanged
    row.refresh_from_db()
    assert row.pdf_sha256 == pdf_sha and row.status == Attestation.READY


def test_a_pending_row_can_still_be_claimed(engineer):
    row = _row(make_change(author=engineer))
    assert Attestation.objects.filter(pk=row.pk, status="pending").update(status="rendering") == 1


def test_str_and_file_stem(engineer):
    row = _row(make_change(author=engineer))
    assert str(row) == f"Attestation v1 of CR-{row.change_id} (approved)"
    assert row.file_stem == f"CR-{row.change_id}-attestation-v1"
