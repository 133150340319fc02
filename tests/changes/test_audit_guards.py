"""Every SQL path that could rewrite the audit table is refused by the database itself, one by
one, on SQLite and on PostgreSQL (migrations 0002 and 0004). Each refusal leaves the table
exactly as it was and the chain valid. (UPDATE and DELETE: test_verify_audit.py.)"""

import json

import pytest
from django.db import DatabaseError, connection, transaction

from changes import audit
from changes.models import AuditEvent

pytestmark = pytest.mark.django_db

TABLE = "changes_auditevent"
COLUMNS = (
    "id, actor_id, actor_username, verb, object_type, object_id, data, created_at, prev_hash, hash"  # noqa: E501
)
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")


@pytest.fixture
def events(db):
    for n in range(4):
        audit.append(actor=None, verb="test.event", data={"n": n})
    return list(AuditEvent.objects.order_by("id"))


def _snapshot():
    return list(AuditEvent.objects.order_by("id").values())


def _refused(sql: str, params=()):
    before = _snapshot()
    with (
        pytest.raises(DatabaseError, match="append-only") as excinfo,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, list(params))
    assert _snapshot() == before
    assert audit.verify_chain() == (len(before), None)
    return excinfo.value


def _row(event, **changes):
    values = {
        "id": event.pk,
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "data": json.dumps(event.data),
        "created_at": event.created_at,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
    values.update(changes)
    return [values[c.strip()] for c in COLUMNS.split(",")]


VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
FRESH = "f" * 64


@on_sqlite
@pytest.mark.parametrize(
    "statement",
    [
        f"REPLACE INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
        f"INSERT OR REPLACE INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
        f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {VALUES} "
        "ON CONFLICT(id) DO UPDATE SET verb = excluded.verb",
        f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {VALUES} "
        "ON CONFLICT DO UPDATE SET verb = excluded.verb",
        f"INSERT OR IGNORE INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
    ],
    ids=["replace", "insert-or-replace", "upsert-on-id", "upsert-any", "insert-or-ignore"],
)
def test_sqlite_refuses_rewriting_an_existing_id(events, statement):
    victim = events[1]
    _refused(statement, _row(victim, verb="forged", hash=FRESH))


@on_sqlite
@pytest.mark.parametrize("column", ["hash", "prev_hash"])
def test_sqlite_refuses_a_replace_that_collides_on_a_chain_hash(events, column):
    # REPLACE resolves a conflict on any unique column by deleting the old row: a new id
    # that reuses a chain hash would silently remove the event holding it.
    victim = events[1]
    new_id = events[-1].pk + 100
    other = {"hash": FRESH, "prev_hash": "e" * 64}
    other[column] = getattr(victim, column)
    _refused(
        f"INSERT OR REPLACE INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
        _row(victim, id=new_id, **other),
    )  # noqa: E501


@on_sqlite
def test_sqlite_refuses_an_insert_below_the_head(events):
    # an id inside the chain (say, where a deleted row was) or a negative one
    for event_id in (0, events[0].pk, -5):
        _refused(
            f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
            _row(events[0], id=event_id, hash=FRESH, prev_hash="e" * 64),
        )


@on_sqlite
def test_sqlite_refuses_update_or_replace(events):
    _refused(f"UPDATE OR REPLACE {TABLE} SET verb = 'forged' WHERE id = %s", [events[0].pk])


@on_sqlite
def test_sqlite_refuses_replace_even_with_recursive_triggers_off(events):
    # The DELETE half of REPLACE skips DELETE triggers unless recursive_triggers is on, and
    # any connection may switch it off; the INSERT guard does not depend on it.
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA recursive_triggers = OFF")
    _refused(
        f"REPLACE INTO {TABLE} ({COLUMNS}) VALUES {VALUES}",
        _row(events[2], verb="forged", hash=FRESH),
    )


def test_the_application_still_appends(events):
    # the guards refuse rewrites, not the appends every service makes
    event = audit.append(actor=None, verb="test.after")
    assert event.pk > events[-1].pk
    assert audit.verify_chain() == (len(events) + 1, None)


@on_postgres
@pytest.mark.parametrize(
    "statement",
    [
        f"TRUNCATE {TABLE}",
        f"TRUNCATE TABLE ONLY {TABLE}",
        f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE",
    ],
)
def test_postgresql_refuses_truncate(events, statement):
    error = _refused(statement)
    assert "TRUNCATE refused" in str(error)


@on_postgres
@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {VALUES} "
        "ON CONFLICT (id) DO UPDATE SET verb = excluded.verb",
        f"INSERT INTO {TABLE} ({COLUMNS}) VALUES {VALUES} "
        "ON CONFLICT (hash) DO UPDATE SET verb = excluded.verb",
        f"MERGE INTO {TABLE} t USING (SELECT %s::bigint AS id, %s::int AS a, %s AS u, %s AS v, "
        "%s AS ot, %s AS oi, %s::jsonb AS d, %s::timestamptz AS c, %s AS p, %s AS h) s "
        "ON t.id = s.id WHEN MATCHED THEN UPDATE SET verb = s.v",
    ],
    ids=["upsert-on-id", "upsert-on-hash", "merge"],
)
def test_postgresql_refuses_upserts(events, statement):
    _refused(statement, _row(events[1], verb="forged"))


@on_postgres
@pytest.mark.parametrize(
    "statement",
    [f"TRUNCATE {TABLE}", f"DELETE FROM {TABLE}", f"UPDATE {TABLE} SET verb = 'forged'"],
    ids=["truncate", "delete", "update"],
)
def test_postgresql_guards_fire_in_replica_mode_too(events, statement):
    # session_replication_role = replica skips ordinary triggers (a superuser's shortcut);
    # the audit guards are ENABLE ALWAYS.
    before = _snapshot()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(statement)
    assert _snapshot() == before
