"""Shared set-up for benchmarks: Django on the configured database, or a temporary SQLite
file when ``DATABASE_URL`` is unset, migrated once per process."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

_READY = False


def django_setup() -> None:
    """Configure Django once; benchmarks never touch the developer's own database."""
    global _READY
    if _READY:
        return
    if not os.environ.get("DATABASE_URL"):
        path = Path(tempfile.mkdtemp(prefix="pcm-bench-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _READY = True


def is_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
        "n": len(ordered),
    }


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def figure(name, value, unit, *, baseline=None, ratio=None, target="", met=None) -> dict:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
    }
