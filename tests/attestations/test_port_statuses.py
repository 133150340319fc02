"""The attestation port tells lists which changes have a PDF to download."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import pytest

from attestations.models import Attestation
from attestations.port import Attestations
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def test_statuses_name_ready_changes_and_omit_those_without_one(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given a change with a ready attestation, and a draft with none
    ready = ready_attestation(engineer, [reviewer])
    draft = make_change(author=engineer)
    # when a later version is still rendering, the change still has a ready PDF
    Attestation.objects.create(
        change=ready.change, version=2, reason="deployed", content_sha256="0" * 64
    )
    statuses = Attestations().statuses([ready.change_id, draft.pk])
    # then the draft is absent and the change with a ready version says "ready"
    assert statuses == {ready.change_id: "ready"}
