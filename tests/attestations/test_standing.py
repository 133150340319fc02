"""Issue 15, item 3: validity is not standing, and facts that moved are never issued as current.

* A valid attestation is ``current`` until a newer one is issued, a cited approval is voided,
  the change is edited or leaves the reported state; then ``superseded`` (by which, when, why),
  in the verify API, the page, the command, the change page and the auditor list.
* An approval voided while its attestation renders: the row becomes ``void`` (not issued),
  never a ready attestation that claims the voided approval.
"""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from attestations import services
from attestations.models import Attestation
from attestations.standing import standing_of
from changes import services as change_services
from changes.models import AuditEvent, Review
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approved_change,
    deploy,
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/attestations/verify/"


def verify(api, user, data: bytes) -> dict:
    response = api(user).post(
        VERIFY, {"file": SimpleUploadedFile("a.pdf", data)}, format="multipart"
    )
    assert response.status_code == 200
    return response.json()


def edit(change, engineer):
    """An edit that moves the content hash: voids the approvals, back to draft."""
    change_services.change_request_update(
        actor=engineer, change_request=change, data={"rationale": "Edited after approval."}
    )


def test_a_newer_attestation_supersedes_the_older_one(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, api, auditor, client
):
    v1 = ready_attestation(engineer, [reviewer])
    assert verify(api, auditor, bytes(v1.pdf))["standing"] == "current"

    deploy(v1.change, actor=engineer)
    (v2,) = render_pending()
    assert v2.status == Attestation.READY and v2.version == 2

    old = verify(api, auditor, bytes(v1.pdf))
    assert old["valid"] is True  # still intact and issued here: validity does not expire
    assert old["standing"] == "superseded"
    detail = old["standing_detail"]
    assert detail["superseded_by"] == {"id": v2.pk, "version": 2, "reason": "deployed"}
    assert detail["superseded_at"] and "newer attestation" in detail["why"]
    new = verify(api, auditor, bytes(v2.pdf))
    assert (new["valid"], new["standing"]) == (True, "current")

    # The API lists say so too.
    rows = api(auditor).get(f"/api/v1/changes/{v1.change_id}/attestations/").json()["results"]
    by_version = {r["version"]: r["standing"] for r in rows}
    assert by_version[2]["standing"] == "current"
    assert by_version[1]["standing"] == "superseded"
    assert by_version[1]["superseded_by"]["version"] == 2
    detail = api(auditor).get(f"/api/v1/attestations/{v1.pk}/").json()
    assert detail["standing"]["standing"] == "superseded"

    # The change page panel and the auditor list mark it.
    client.force_login(auditor)
    panel = client.get(f"/changes/{v1.change_id}/").content.decode()
    assert panel.count('data-standing="superseded"') == 1
    assert panel.count('data-standing="current"') == 1
    listing = client.get("/attestations/").content.decode()
    assert 'data-standing="superseded"' in listing and "by v2" in listing


def test_an_approval_voided_later_supersedes_a_valid_attestation_and_says_why(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, api, auditor, client, tmp_path
):
    v1 = ready_attestation(engineer, [reviewer])
    edit(v1.change, engineer)

    result = verify(api, auditor, bytes(v1.pdf))
    assert result["valid"] is True
    assert result["standing"] == "superseded"
    codes = {c["code"] for c in result["standing_detail"]["causes"]}
    assert {"approval_voided", "content_changed", "state_changed"} <= codes
    assert f"the approval by {reviewer.username} was voided" in result["standing_detail"]["why"]
    assert result["standing_detail"]["superseded_by"] is None

    client.force_login(auditor)
    page = client.post("/attestations/verify/", {"file": SimpleUploadedFile("a.pdf", v1.pdf)})
    assert 'data-standing="superseded"' in page.content.decode()

    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "a.pdf"
    path.write_bytes(bytes(v1.pdf))
    out = StringIO()
    call_command("verify_attestation", str(path), stdout=out)
    assert "SUPERSEDED" in out.getvalue() and "voided" in out.getvalue()


def test_a_withdrawn_change_supersedes_its_attestation(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    v1 = ready_attestation(engineer, [reviewer])
    change_services.change_request_withdraw(actor=engineer, change_request=v1.change)
    standing = standing_of(Attestation.objects.get(pk=v1.pk))
    assert standing.standing == "superseded"
    assert "withdrawn" in standing.why


def test_an_approval_voided_while_the_attestation_renders_is_never_issued_as_current(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, monkeypatch, client
):
    change = approved_change(engineer, [reviewer])
    (row,) = Attestation.objects.filter(status=Attestation.PENDING)
    real_render = services.render_pdf

    def render_while_an_edit_voids_the_approval(html, **kwargs):
        pdf = real_render(html, **kwargs)
        edit(change, engineer)  # commits on its own: the render runs outside any transaction
        return pdf

    monkeypatch.setattr(services, "render_pdf", render_while_an_edit_voids_the_approval)
    (result,) = render_pending()

    assert result.status == Attestation.VOID
    assert not result.pdf and not result.pdf_sha256
    assert "approval by" in result.error and "voided" in result.error
    assert Review.objects.get(change=change).voided_at is not None
    assert not AuditEvent.objects.filter(verb="attestation.issued").exists()
    voided = AuditEvent.objects.get(verb="attestation.voided")
    assert voided.data["attestation"] == row.pk and "approval_voided" in voided.data["why"]
    assert not Attestation.objects.filter(status=Attestation.READY).exists()
    # A void row is terminal: the periodic requeue does not bring it back.
    services.attestation_requeue_stalled()
    assert Attestation.objects.get(pk=row.pk).status == Attestation.VOID

    client.force_login(engineer)
    page = client.get(f"/changes/{change.pk}/").content.decode()
    assert 'data-standing="void"' in page and "Not issued" in page


def test_an_approval_voided_before_the_render_starts_skips_the_render(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, monkeypatch
):
    change = approved_change(engineer, [reviewer])
    edit(change, engineer)
    calls = []
    monkeypatch.setattr(services, "render_pdf", lambda *a, **k: calls.append(1))
    (result,) = render_pending()
    assert result.status == Attestation.VOID and calls == []


@pytest.mark.django_db(transaction=True)
def test_the_fill_waits_for_a_concurrent_void_and_then_refuses_to_issue(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, monkeypatch
):
    """PostgreSQL: the edit holds the change row lock while the worker finishes; the fill
    takes the same lock, so it sees the voided approval and does not issue."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are only meaningful on PostgreSQL")
    from django.db import transaction

    change = approved_change(engineer, [reviewer])
    locked, release = threading.Event(), threading.Event()

    def editor():
        try:
            with transaction.atomic():
                change_services.lock_change(change.pk)
                locked.set()
                release.wait(10)
                edit(change, engineer)
        finally:
            connection.close()

    thread = threading.Thread(target=editor)
    real_render = services.render_pdf

    def render_then_let_the_edit_commit(html, **kwargs):
        pdf = real_render(html, **kwargs)
        thread.start()
        assert locked.wait(10)
        threading.Timer(0.5, release.set).start()  # commits while the fill waits for the lock
        return pdf

    monkeypatch.setattr(services, "render_pdf", render_then_let_the_edit_commit)
    (result,) = render_pending()
    thread.join(10)
    assert result.status == Attestation.VOID
    assert not Attestation.objects.filter(status=Attestation.READY).exists()


def test_the_auditor_list_marks_standing_in_a_constant_number_of_queries(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, auditor, client
):
    from django.test.utils import CaptureQueriesContext

    v1 = ready_attestation(engineer, [reviewer])
    client.force_login(auditor)

    def add_versions(upto):
        for version in range(Attestation.objects.count() + 1, upto + 1):
            Attestation.objects.create(
                change=v1.change,
                version=version,
                reason=Attestation.APPROVED,
                status=Attestation.READY,
                content_sha256=v1.content_sha256,
                facts=v1.facts,
                pdf_sha256=f"{version:064x}",
            )

    def count():
        with CaptureQueriesContext(connection) as ctx:
            html = client.get("/attestations/").content.decode()
        return len(ctx.captured_queries), html

    add_versions(2)
    few, _ = count()
    add_versions(8)
    many, html = count()
    assert many == few
    assert html.count('data-standing="superseded"') == 7
    assert html.count('data-standing="current"') == 1
