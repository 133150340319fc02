"""``manage.py verify_audit`` and the database's append-only guard on the audit table.

Tampering needs the guard lifted first, exactly as an attacker with a SQL shell would have
to: on PostgreSQL the trigger is disabled and re-enabled; on SQLite it is dropped and then
recreated exactly as migration 0002 creates it.
"""

import importlib
import io
from contextlib import contextmanager

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from changes import audit
from changes.models import AuditEvent
from tests.changes.test_api_support import pin_null_ports, url
from tests.factories import make_change

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("changes.migrations.0002_audit_append_only")
TABLE = MIGRATION.TABLE


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def events(engineer):
    """A short chain: a change filed and edited, and a few more events."""
    from changes import services

    change = make_change(author=engineer)
    services.change_request_update(actor=engineer, change_request=change, data={"title": "T2"})
    for n in range(3):
        audit.append(actor=engineer, verb="test.event", data={"n": n})
    return list(AuditEvent.objects.order_by("id"))


@contextmanager
def guard_lifted(operation: str):
    """Lift the trigger that refuses ``operation`` (update|delete) for the block only."""
    trigger = f"audit_event_no_{operation}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {trigger}")
            try:
                yield cursor
            finally:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {trigger}")
        else:
            cursor.execute(f"DROP TRIGGER {trigger}")
            try:
                yield cursor
            finally:
                cursor.execute(MIGRATION.SQLITE_FORWARD[0 if operation == "update" else 1])


def _run() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def test_a_clean_chain_is_ok(events):
    # given: an untouched chain
    head = events[-1]

    # when: it is verified
    output = _run()

    # then: OK with the count and the head, and a warning that nothing anchors it yet
    first, second = output.strip().splitlines()
    assert first == f"OK: {len(events)} events, head #{head.pk} {head.hash}"
    assert second.startswith("Not anchored: no checkpoint has been published yet")


def test_an_empty_chain_is_ok(db):
    # given: no events at all
    assert not AuditEvent.objects.exists()
    # when/then: OK
    assert _run().startswith("OK: 0 events")


@pytest.mark.parametrize("column", ["verb", "actor_username", "object_id"])
def test_an_edited_event_is_named(events, api, auditor, column):
    # given: one event in the middle edited behind the application's back
    victim = events[len(events) // 2]
    with guard_lifted("update") as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", ["forged", victim.pk])

    # when: the chain is verified
    with pytest.raises(CommandError) as excinfo:
        _run()

    # then: exit status 1, naming that event and why
    assert excinfo.value.returncode == 1
    assert f"event #{victim.pk}:" in str(excinfo.value)
    assert "hash does not match" in str(excinfo.value)
    # ... and the API says the same to auditors
    body = api(auditor).get(url("audit-verify")).json()
    assert body["valid"] is False and body["first_bad_event"] == victim.pk


def test_a_deleted_event_is_noticed_at_the_next_one(events):
    # given: one event removed from the middle
    victim, successor = events[2], events[3]
    with guard_lifted("delete") as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [victim.pk])

    # when: the chain is verified
    with pytest.raises(CommandError) as excinfo:
        _run()

    # then: the event after the gap no longer links to its predecessor
    assert f"event #{successor.pk}:" in str(excinfo.value)
    assert "prev_hash" in str(excinfo.value)


def test_the_command_line_exits_1_and_prints_the_event(events, capsys):
    # given: a tampered event
    victim = events[1]
    with guard_lifted("update") as cursor:
        cursor.execute(f"UPDATE {TABLE} SET verb = 'forged' WHERE id = %s", [victim.pk])

    # when: run as `manage.py verify_audit`
    with pytest.raises(SystemExit) as excinfo:
        execute_from_command_line(["manage.py", "verify_audit"])

    # then: exit status 1, the event on stderr
    assert excinfo.value.code == 1
    assert f"event #{victim.pk}" in capsys.readouterr().err


def test_the_guard_is_back_after_tampering(events):
    # given: the guard was lifted and restored
    with guard_lifted("update"):
        pass

    # when/then: an UPDATE is refused again
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET verb = 'x' WHERE id = %s", [events[0].pk])


@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE {TABLE} SET verb = 'forged' WHERE id = %s",
        f"UPDATE {TABLE} SET data = data WHERE id = %s",
        f"DELETE FROM {TABLE} WHERE id = %s",
    ],
    ids=["update-verb", "update-noop", "delete"],
)
def test_the_database_refuses_update_and_delete(events, statement):
    # given: an event
    victim = events[0]
    before = list(AuditEvent.objects.order_by("id").values())

    # when: raw SQL tries to change or remove it
    with (
        pytest.raises(DatabaseError) as excinfo,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [victim.pk])

    # then: the database refuses, and the chain is untouched and valid
    assert "append-only" in str(excinfo.value)
    assert list(AuditEvent.objects.order_by("id").values()) == before
    assert audit.verify_chain() == (len(events), None)


def test_the_orm_cannot_update_or_delete_either(events):
    # given: an event
    before = AuditEvent.objects.count()

    # when/then: the ORM's update and delete are refused too
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=events[0].pk).update(verb="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=events[0].pk).delete()
    assert AuditEvent.objects.count() == before
    assert audit.verify_chain()[1] is None
