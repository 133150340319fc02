"""Test settings: the same module, with fast hashing and a database per run.

``DATABASE_URL`` and ``CELERY_BROKER_URL`` still choose PostgreSQL/Redis in CI.
"""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")

from .settings import *  # noqa: E402,F403
from .settings import DATABASES, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# One test database per test process, so parallel runs on one machine never collide.
# Worker subprocesses started by tests are given the resulting NAME explicitly.
_suffix = os.getpid()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real worker process can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{_suffix}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_suffix}"}
    # One connection per request, as before persistent connections: the live server answers
    # each request on a thread of its own, and a kept connection would outlive that thread
    # and hold the test database open at teardown.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
AXES_ENABLED = True
# Checkpoints of a test database never mix with the dev store (tests/conftest.py also gives
# each test a fresh directory, since the database rolls back between tests).
AUDIT_CHECKPOINT_DIR = os.environ.get(
    "AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "test-checkpoints" / str(_suffix))
)
