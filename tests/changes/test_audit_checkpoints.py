"""Signed checkpoints anchor the audit chain outside its table, and ``verify_audit`` holds the
table to the newest one: truncation, TRUNCATE and a re-chained rewrite each fail, naming the
event and the checkpoint (or are refused by the database first).

Tampering lifts the database guards first, as a table owner could.
"""

import io
import os
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from changes import audit, checkpoints, services
from changes.models import AuditCheckpoint, AuditEvent
from core import files
from tests.changes.test_api_support import pin_null_ports, url
from tests.factories import PASSWORD, make_change

pytestmark = pytest.mark.django_db

TABLE = "changes_auditevent"
SQLITE_REWRITE_GUARD = __import__(
    "changes.migrations.0004_audit_rewrite_guards", fromlist=["SQLITE_FORWARD"]
).SQLITE_FORWARD
SQLITE_DELETE_GUARD = __import__(
    "changes.migrations.0002_audit_append_only", fromlist=["SQLITE_FORWARD"]
).SQLITE_FORWARD[1]
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def events(engineer):
    change = make_change(author=engineer)
    services.change_request_update(actor=engineer, change_request=change, data={"title": "T2"})
    for n in range(5):
        audit.append(actor=engineer, verb="test.event", data={"n": n})
    return list(AuditEvent.objects.order_by("id"))


@pytest.fixture
def published(events):
    """A checkpoint of the whole chain, as beat would publish it."""
    return checkpoints.publish_checkpoint(reason="test")


def _verify() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def _broken() -> str:
    with pytest.raises(CommandError) as excinfo:
        _verify()
    assert excinfo.value.returncode == 1
    return str(excinfo.value)


def _delete_guard_lifted(cursor):
    if connection.vendor == "postgresql":
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_delete")
    else:
        cursor.execute("DROP TRIGGER audit_event_no_delete")


# --- publishing ----------------------------------------------------------------------------


def test_a_checkpoint_is_a_signed_note_in_the_store_and_the_database(settings, published, events):
    # then: the file is in the directory, named by size and time, and verifies
    store = Path(settings.AUDIT_CHECKPOINT_DIR)
    path = store / published.name
    assert re.fullmatch(r"\d{12}-\d{8}T\d{12}Z\.checkpoint", published.name)
    note = path.read_text()
    parsed = checkpoints.parse_note(note)
    assert checkpoints.signature_valid(parsed, checkpoints.trusted_keys())
    # it commits to every event: size, Merkle root over the chain hashes, head
    assert parsed.size == len(events)
    assert parsed.root == checkpoints.merkle_root(checkpoints.leaf_hash(e.hash) for e in events)
    assert (parsed.head_id, parsed.head_hash) == (events[-1].pk, events[-1].hash)
    assert parsed.origin == settings.AUDIT_CHECKPOINT_ORIGIN
    # the leaf file lists every event, and the database keeps a copy
    (leaf_file,) = (store / "leaves").glob("*.txt")
    assert leaf_file.read_text().splitlines() == [f"{e.pk} {e.hash}" for e in events]
    copy = AuditCheckpoint.objects.get()
    assert (copy.file_name, copy.note, copy.tree_size) == (published.name, note, len(events))


def test_checkpoints_are_never_overwritten(settings, published, engineer):
    # given: a published checkpoint file
    store = Path(settings.AUDIT_CHECKPOINT_DIR)
    first = (store / published.name).read_bytes()

    # when: more events are checkpointed, and a writer tries the same file name again
    audit.append(actor=engineer, verb="test.more")
    second = checkpoints.publish_checkpoint()
    rewritten = files.write_once(store / published.name, b"forged")

    # then: the first file is untouched and the new one sits beside it
    assert rewritten is False
    assert (store / published.name).read_bytes() == first
    assert second.size == published.size + 1
    assert checkpoints.latest_checkpoint().name == second.name
    assert sorted(p.name for p in store.glob("*.checkpoint")) == sorted(
        [published.name, second.name]
    )
    assert not list(store.glob(".tmp-*"))


def test_a_clean_anchored_chain_verifies(published, events, engineer):
    # given: one more event after the checkpoint
    audit.append(actor=engineer, verb="test.after")

    # when/then: OK, anchored, and one event since
    lines = _verify().splitlines()
    assert lines[0].startswith(f"OK: {len(events) + 1} events, head #")
    assert lines[1] == f"Anchored: agrees with {published.describe()}; 1 event(s) since."


def test_without_a_checkpoint_the_command_says_the_chain_is_not_anchored(events):
    assert "Not anchored" in _verify()


def test_the_celery_task_publishes_and_beat_schedules_it(settings, events):
    from changes.tasks import publish_audit_checkpoint

    name = publish_audit_checkpoint.run(reason="schedule")
    assert (Path(settings.AUDIT_CHECKPOINT_DIR) / name).exists()
    entry = settings.CELERY_BEAT_SCHEDULE["publish-audit-checkpoint"]
    assert entry["task"] == publish_audit_checkpoint.name == "changes.publish_audit_checkpoint"
    assert AuditCheckpoint.objects.get().reason == "schedule"


def test_a_deployment_schedules_a_checkpoint(
    engineer, reviewer, pipeline, passing_evaluations, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # given: an approved change
    change = make_change(author=engineer)
    services.change_request_submit(actor=engineer, change_request=change)
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
    )
    services.review_submit(
        actor=reviewer, change_request=change, decision="approve", password=PASSWORD
    )
    asked = []
    monkeypatch.setattr(checkpoints, "enqueue_publish", asked.append)

    # when: it is deployed and the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        services.change_request_deploy(actor=pipeline, change_request=change)

    # then: a checkpoint was requested for the deploy
    assert asked == ["deploy"]


def test_the_command_publishes_too(settings, events):
    out = io.StringIO()
    call_command("publish_checkpoint", stdout=out)
    assert out.getvalue().startswith("Published ")
    assert len(list(Path(settings.AUDIT_CHECKPOINT_DIR).glob("*.checkpoint"))) == 1


def test_without_a_key_nothing_is_published(settings, events):
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = ""
    settings.AUDIT_CHECKPOINT_SIGNING_KEY_FILE = ""
    settings.ATTESTATION_SIGNING_KEY = ""
    settings.ATTESTATION_SIGNING_KEY_FILE = ""
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint signing key"):
        checkpoints.publish_checkpoint()
    assert not AuditCheckpoint.objects.exists()


# --- inclusion proofs ------------------------------------------------------------------------


def test_every_event_has_an_inclusion_proof_against_the_checkpoint(published, events, engineer):
    later = audit.append(actor=engineer, verb="test.after")
    for event in events:
        proof = checkpoints.inclusion_proof(event)
        assert proof.tree_size == published.size
        assert checkpoints.verify_inclusion(
            checkpoints.leaf_hash(event.hash), proof.index, proof.tree_size, list(proof.path),
            published.root,
        )  # fmt: skip
    # an event newer than the checkpoint has no proof yet
    with pytest.raises(LookupError):
        checkpoints.inclusion_proof(later)


# --- tampering -------------------------------------------------------------------------------


def test_tail_truncation_names_the_first_missing_event_and_the_checkpoint(published, events):
    # given: the newest two events deleted by a table owner who lifted the guard
    with connection.cursor() as cursor:
        _delete_guard_lifted(cursor)
        cursor.execute(f"DELETE FROM {TABLE} WHERE id >= %s", [events[-2].pk])
    # the remaining chain is internally consistent
    assert audit.verify_chain() == (len(events) - 2, None)

    # when/then: verify_audit fails, naming the first missing event and the checkpoint
    message = _broken()
    assert f"event #{events[-2].pk} is missing" in message
    assert published.name in message
    # ... the API agrees, and no checkpoint can be published over the gap
    with pytest.raises(checkpoints.CheckpointError, match=f"event #{events[-2].pk}"):
        checkpoints.publish_checkpoint()


def test_the_api_reports_the_contradicted_checkpoint(published, events, api, auditor):
    with connection.cursor() as cursor:
        _delete_guard_lifted(cursor)
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [events[-1].pk])
    body = api(auditor).get(url("audit-verify")).json()
    assert body["valid"] is False
    assert body["first_bad_event"] == events[-1].pk
    assert body["checkpoint"] == published.name and published.name in body["reason"]


def test_emptying_the_table_is_noticed(published, events):
    with connection.cursor() as cursor:
        _delete_guard_lifted(cursor)
        cursor.execute(f"DELETE FROM {TABLE}")
    message = _broken()
    assert f"event #{events[0].pk} is missing" in message and published.name in message


def _rechain_from(victim_index: int, events: list, *, forged_verb: str, statement: str):
    """Rewrite one event and re-chain every later hash, row by row, through ``statement``
    (``REPLACE INTO`` or ``INSERT OR REPLACE INTO``): the attack issue 15 reported."""
    prev = events[victim_index - 1].hash if victim_index else audit.GENESIS_HASH
    with connection.cursor() as cursor:
        for event in events[victim_index:]:
            verb = forged_verb if event.pk == events[victim_index].pk else event.verb
            canonical = audit.canonical_event(
                actor_id=event.actor_id,
                actor_username=event.actor_username,
                verb=verb,
                object_type=event.object_type,
                object_id=event.object_id,
                data=event.data,
                created_at=event.created_at,
            )
            new_hash = audit.chain_hash(prev, canonical)
            cursor.execute(
                f"{statement} {TABLE} (id, actor_id, actor_username, verb, object_type, "
                "object_id, data, created_at, prev_hash, hash) SELECT id, actor_id, "
                "actor_username, %s, object_type, object_id, data, created_at, %s, %s "
                f"FROM {TABLE} WHERE id = %s",
                [verb, prev, new_hash, event.pk],
            )
            prev = new_hash


@on_sqlite
@pytest.mark.parametrize("statement", ["REPLACE INTO", "INSERT OR REPLACE INTO"])
def test_a_rechained_rewrite_is_refused_by_sqlite(published, events, statement):
    before = list(AuditEvent.objects.order_by("id").values())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _rechain_from(2, events, forged_verb="forged", statement=statement)
    assert list(AuditEvent.objects.order_by("id").values()) == before
    assert "OK:" in _verify()


@on_sqlite
@pytest.mark.parametrize("statement", ["REPLACE INTO", "INSERT OR REPLACE INTO"])
def test_a_rechained_rewrite_with_the_guard_dropped_names_the_event(published, events, statement):
    # given: the rewrite guard dropped, one event rewritten and every later hash re-chained
    victim = events[2]
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_event_no_rewrite")
    try:
        _rechain_from(2, events, forged_verb="forged", statement=statement)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(SQLITE_REWRITE_GUARD)
    # the chain on its own verifies: that was the hole
    assert audit.verify_chain() == (len(events), None)
    assert AuditEvent.objects.get(pk=victim.pk).verb == "forged"

    # when/then: verify_audit names the rewritten event and the checkpoint it contradicts
    message = _broken()
    assert f"event #{victim.pk} was changed" in message
    assert published.name in message


def test_without_leaf_files_a_rewrite_still_fails_on_the_root(settings, published, events):
    # given: the leaf files lost, and an event rewritten and re-chained (guards lifted)
    for path in (Path(settings.AUDIT_CHECKPOINT_DIR) / "leaves").glob("*.txt"):
        path.unlink()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER audit_event_no_rewrite")
        _rechain_from(3, events, forged_verb="forged", statement="REPLACE INTO")
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_delete")
            cursor.execute(f"DELETE FROM {TABLE} WHERE id >= %s", [events[3].pk])
        _reinsert_rechained(events[3:], events[2].hash)
    # when/then: still broken, naming the checkpoint whose root no longer matches
    message = _broken()
    assert published.name in message and "do not hash to the root" in message


def _reinsert_rechained(rows, prev):
    with connection.cursor() as cursor:
        for event in rows:
            verb = "forged" if event is rows[0] else event.verb
            canonical = audit.canonical_event(
                actor_id=event.actor_id,
                actor_username=event.actor_username,
                verb=verb,
                object_type=event.object_type,
                object_id=event.object_id,
                data=event.data,
                created_at=event.created_at,
            )
            new_hash = audit.chain_hash(prev, canonical)
            cursor.execute(
                f"INSERT INTO {TABLE} (id, actor_id, actor_username, verb, object_type, "
                "object_id, data, created_at, prev_hash, hash) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [event.pk, event.actor_id, event.actor_username, verb, event.object_type,
                 event.object_id, __import__("json").dumps(event.data), event.created_at,
                 prev, new_hash],
            )  # fmt: skip
            prev = new_hash


@on_postgres
def test_truncate_is_refused_by_postgresql(published, events):
    before = AuditEvent.objects.count()
    for statement in (f"TRUNCATE {TABLE}", f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AuditEvent.objects.count() == before
    assert "OK:" in _verify()


@on_postgres
def test_truncate_with_the_trigger_disabled_names_the_checkpoint(published, events):
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_truncate")
        cursor.execute(f"TRUNCATE {TABLE}")
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER audit_event_no_truncate")
    message = _broken()
    assert f"event #{events[0].pk} is missing" in message and published.name in message


@on_postgres
def test_a_rechained_rewrite_on_postgresql_names_the_event(published, events):
    # given: a table owner deletes the tail and re-inserts it rewritten and re-chained
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_delete")
        cursor.execute(f"DELETE FROM {TABLE} WHERE id >= %s", [events[2].pk])
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER audit_event_no_delete")
    _reinsert_rechained(events[2:], events[1].hash)
    assert audit.verify_chain() == (len(events), None)
    message = _broken()
    assert f"event #{events[2].pk} was changed" in message and published.name in message


# --- the store itself --------------------------------------------------------------------------


def test_checkpoints_removed_from_the_directory_are_noticed(settings, published, events):
    # given: the directory lost its checkpoint, the database copy remains
    os.unlink(Path(settings.AUDIT_CHECKPOINT_DIR) / published.name)
    message = _broken()
    assert published.name in message and "removed from the store" in message


def test_a_forged_checkpoint_file_is_refused(settings, published, events):
    # given: a note for a smaller tree, signed by a key this deployment does not trust
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    origin = settings.AUDIT_CHECKPOINT_ORIGIN
    body = checkpoints.format_body(origin, 1, b"\x00" * 32, 1, "0" * 64, "2099-01-01T00:00:00Z")
    forged = checkpoints.sign_body(body, Ed25519PrivateKey.generate(), origin)
    name = f"{999:012d}-20990101T000000000000Z.checkpoint"
    (Path(settings.AUDIT_CHECKPOINT_DIR) / name).write_text(forged)
    # when/then: it is never the newest checkpoint, and verification says why it fails
    assert checkpoints.latest_checkpoint().name == published.name
    message = _broken()
    assert name in message and "not signed by a trusted checkpoint key" in message


def test_the_audit_page_verdict_names_the_checkpoint(client, auditor, published, events):
    # given: a clean anchored chain, then its tail deleted
    client.force_login(auditor)
    response = client.post(reverse("audit-verify"), follow=True)
    assert any(
        "intact" in str(m) and published.name in str(m) for m in response.context["messages"]
    )
    with connection.cursor() as cursor:
        _delete_guard_lifted(cursor)
        cursor.execute(f"DELETE FROM {TABLE} WHERE id >= %s", [events[-1].pk])

    # when/then: the page says it is broken, which event, and which checkpoint
    response = client.post(reverse("audit-verify"), follow=True)
    (message,) = [str(m) for m in response.context["messages"]]
    assert "broken" in message and f"event #{events[-1].pk}" in message
    assert published.name in message


def test_admins_see_the_checkpoint_copies_read_only(client, admin_user, published):
    client.force_login(admin_user)
    changelist = client.get(reverse("admin:changes_auditcheckpoint_changelist"))
    assert changelist.status_code == 200 and published.name in changelist.content.decode()
    assert client.get(reverse("admin:changes_auditcheckpoint_add")).status_code == 403


def test_a_damaged_leaf_file_falls_back_to_the_root(settings, published, events):
    # given: the leaf file overwritten with garbage (the checkpoint itself intact)
    (leaf_file,) = (Path(settings.AUDIT_CHECKPOINT_DIR) / "leaves").glob("*.txt")
    leaf_file.write_bytes(b"not a leaf\n\xff\xfe\n")
    # when/then: the untouched chain still verifies against the signed root, with a warning
    out = io.StringIO()
    err = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=err)
    assert out.getvalue().startswith("OK:") and "Anchored" in out.getvalue()
    assert "leaf files cover fewer" in err.getvalue()


def test_an_unwritable_store_is_a_clear_refusal(settings, events, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.AUDIT_CHECKPOINT_DIR = str(blocker / "checkpoints")
    with pytest.raises(CommandError, match="cannot write to the checkpoint store"):
        call_command("publish_checkpoint")
    assert not AuditCheckpoint.objects.exists()


@on_sqlite
def test_a_rewrite_before_a_break_is_named_first(published, events, api, auditor):
    # given: event 3 rewritten and re-chained through event 4 only, so the chain breaks at 5
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_event_no_rewrite")
    try:
        _rechain_from(2, events[:4], forged_verb="forged", statement="REPLACE INTO")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(SQLITE_REWRITE_GUARD)

    # when/then: the break is reported, and so is the earlier rewrite, named first
    message = _broken()
    assert f"event #{events[4].pk}: prev_hash" in message
    assert f"event #{events[2].pk} was changed" in message and published.name in message
    body = api(auditor).get(url("audit-verify")).json()
    assert body["first_bad_event"] == events[2].pk


def test_the_audit_page_shows_the_newest_checkpoint(client, auditor, events):
    client.force_login(auditor)
    assert "No signed checkpoint" in client.get(reverse("audit-log")).content.decode()
    checkpoint = checkpoints.publish_checkpoint()
    html = client.get(reverse("audit-log")).content.decode()
    assert checkpoint.name in html and f"{checkpoint.size} events" in html
