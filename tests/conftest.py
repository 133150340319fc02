"""Persona fixtures shared by every test package.

Personas: ``engineer`` and ``engineer2`` (team A), ``reviewer`` and ``reviewer2`` (team B),
``team_a_reviewer`` (a reviewer on the author's team), ``auditor``, ``admin_user``,
``pipeline`` (a deploy token user), ``outsider`` (authenticated, no role).
"""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import PASSWORD, TeamFactory, UserFactory

AUDIT_TRIGGERS_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON changes_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END;",
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON changes_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END;",
)


@pytest.fixture(autouse=True, scope="session")
def _flush_keeps_audit_guard(django_db_setup, django_db_blocker):
    """Transactional tests flush every table between tests, which the audit guard refuses:
    on SQLite the flush is DELETE (refused by the row trigger), on PostgreSQL it is TRUNCATE
    (refused by the statement-level TRUNCATE trigger of migration 0004). Only in tests, and
    only around that one flush statement, the guard is lifted and put back: on SQLite the
    DELETE triggers are dropped and recreated, on PostgreSQL the TRUNCATE trigger is disabled
    and re-enabled in the same transaction. Production code has no such path."""
    ops = connection.ops.__class__
    original = ops.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        sql = original(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if "changes_auditevent" not in tables or not sql:
            return sql
        if connection.vendor == "postgresql":
            table = "changes_auditevent"
            return [
                f"ALTER TABLE {table} DISABLE TRIGGER audit_event_no_truncate;",
                *sql,
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER audit_event_no_truncate;",
            ]
        drop = [
            "DROP TRIGGER IF EXISTS audit_event_no_update;",
            "DROP TRIGGER IF EXISTS audit_event_no_delete;",
        ]
        return [*drop, *sql, *AUDIT_TRIGGERS_SQLITE]

    ops.sql_flush = sql_flush
    yield
    ops.sql_flush = original


@pytest.fixture(autouse=True, scope="session")
def _attestation_signing_key():
    """A fresh clone has no signing key; seed_demo makes one for `make run`. Tests (and the
    worker processes they start, which read the same settings) get the same dev key."""
    from attestations.keys import ensure_dev_key

    ensure_dev_key()


@pytest.fixture(autouse=True)
def _private_checkpoint_store(tmp_path_factory, settings):
    """Each test gets an empty audit checkpoint directory: checkpoints live outside the
    database, so they would otherwise outlive the rolled-back events they describe."""
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path_factory.mktemp("checkpoints"))


PASSWORD_FOR_TESTS = PASSWORD

#: Test tiers by directory (docs in CONTRIBUTING.md): every test under one of these folders gets
#: the marker, so ``make test-fast`` can leave the slow tiers out without each file saying so.
TIER_BY_DIRECTORY = {
    "browser": "browser",
    "fuzz": "fuzz",
    "reliability": "reliability",
    "load": "load",
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    root = config.rootpath / "tests"
    for item in items:
        try:
            folder = item.path.relative_to(root).parts[0]
        except ValueError:
            continue
        marker = TIER_BY_DIRECTORY.get(folder)
        if marker and item.get_closest_marker(marker) is None:
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters and cached diffs live in the cache: each test starts empty."""
    from django.core.cache import caches

    for store in caches.all():
        store.clear()
    yield
    for store in caches.all():
        store.clear()


@pytest.fixture
def team_a(db):
    return TeamFactory(name="Team A")


@pytest.fixture
def team_b(db):
    return TeamFactory(name="Team B")


@pytest.fixture
def engineer(team_a):
    return UserFactory(username="engineer", roles=["engineer"], team=team_a)


@pytest.fixture
def engineer2(team_a):
    return UserFactory(username="engineer2", roles=["engineer"], team=team_a)


@pytest.fixture
def reviewer(team_b):
    return UserFactory(username="reviewer", roles=["reviewer"], team=team_b)


@pytest.fixture
def reviewer2(team_b):
    return UserFactory(username="reviewer2", roles=["reviewer"], team=team_b)


@pytest.fixture
def team_a_reviewer(team_a):
    """A reviewer on the author's team: independent enough only for low/medium systems."""
    return UserFactory(username="areviewer", roles=["reviewer"], team=team_a)


@pytest.fixture
def outsider_reviewer(db):
    """A reviewer on no team at all."""
    return UserFactory(username="outsider_reviewer", roles=["reviewer"])


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor", roles=["auditor"])


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", roles=["admin"], is_staff=True, is_superuser=True)


@pytest.fixture
def pipeline(db):
    return UserFactory(username="pipeline", roles=["pipeline"])


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


def token_for(user, scopes=None) -> str:
    """A new API token key for ``user`` (all scopes unless given), stored as the service
    stores it but without its audit event, so tests can compare audit counts around calls."""
    import secrets
    from datetime import timedelta

    from django.utils import timezone

    from changes import tokens
    from changes.models import ApiToken
    from core.tokens import KEY_PREFIX, hash_key

    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    ApiToken.objects.create(
        user=user,
        prefix=prefix,
        key_sha256=hash_key(key),
        scopes=tokens.clean_scopes(scopes),
        expires_at=timezone.now() + timedelta(days=1),
    )
    return key


def api_client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture
def api():
    """``api(user)`` -> an APIClient authenticated with that user's token."""
    return api_client_for
