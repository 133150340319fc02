"""A database trigger that refuses any UPDATE of a ready attestation (PostgreSQL and SQLite).

The render service fills a pending row once; after that the row is evidence and must never
change. DELETE is not trapped: the application never deletes (no service does, the admin
refuses, and the change's foreign key is PROTECT), and test flushes must be able to empty the
table.
"""

from django.db import migrations

TABLE = "attestations_attestation"

PG_FORWARD = f"""
CREATE OR REPLACE FUNCTION attestation_ready_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ready attestations are immutable (UPDATE refused)'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER attestation_ready_no_update BEFORE UPDATE ON {TABLE}
    FOR EACH ROW WHEN (OLD.status = 'ready') EXECUTE FUNCTION attestation_ready_immutable();
"""
PG_REVERSE = f"""
DROP TRIGGER IF EXISTS attestation_ready_no_update ON {TABLE};
DROP FUNCTION IF EXISTS attestation_ready_immutable();
"""
SQLITE_FORWARD = f"""CREATE TRIGGER attestation_ready_no_update BEFORE UPDATE ON {TABLE}
    WHEN OLD.status = 'ready'
    BEGIN SELECT RAISE(ABORT, 'ready attestations are immutable (UPDATE refused)'); END;"""
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS attestation_ready_no_update;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("attestations", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
