"""Close the rewrite paths migration 0002 left open on the audit table.

* PostgreSQL: row-level UPDATE/DELETE triggers do not fire on ``TRUNCATE``; a statement-level
  ``BEFORE TRUNCATE`` trigger refuses it. All three triggers are ``ENABLE ALWAYS``, so they
  fire even under ``SET session_replication_role = replica``, which skips ordinary triggers.
* SQLite: ``REPLACE INTO`` / ``INSERT OR REPLACE`` resolve a uniqueness conflict by deleting the
  old row, and DELETE triggers fire on that only when ``PRAGMA recursive_triggers`` is on (it is
  off by default, per connection, so an attacker's own connection decides). A ``BEFORE INSERT``
  trigger fires before any conflict resolution: it refuses a row that reuses an existing id,
  hash or prev_hash, or an explicit id at or below the current head. That covers ``REPLACE``,
  ``INSERT OR REPLACE`` and ``INSERT ... ON CONFLICT DO UPDATE`` (whose UPDATE half is refused
  by the UPDATE trigger as well). The application never gives an id, and SQLite reports an
  id it will assign itself as ``NEW.id = -1`` inside a BEFORE trigger.

See docs/AUDIT.md for what each guard covers and what only the checkpoints can catch.
"""

from django.db import migrations

TABLE = "changes_auditevent"

PG_FORWARD = f"""
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER audit_event_no_update;
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER audit_event_no_delete;
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER audit_event_no_truncate;
"""
PG_REVERSE = f"""
ALTER TABLE {TABLE} ENABLE TRIGGER audit_event_no_update;
ALTER TABLE {TABLE} ENABLE TRIGGER audit_event_no_delete;
DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};
"""

SQLITE_FORWARD = f"""CREATE TRIGGER audit_event_no_rewrite BEFORE INSERT ON {TABLE}
    WHEN EXISTS (
        SELECT 1 FROM {TABLE}
        WHERE id = NEW.id OR hash = NEW.hash OR prev_hash = NEW.prev_hash
    )
    OR NEW.id < -1
    OR (NEW.id >= 0 AND NEW.id <= (SELECT COALESCE(MAX(id), -1) FROM {TABLE}))
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only (rewriting INSERT refused)'); END;"""  # noqa: S608 - constant identifiers
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS audit_event_no_rewrite;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("changes", "0003_roles")]
    operations = [migrations.RunPython(forward, reverse)]
