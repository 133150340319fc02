"""Demo suites for ``manage.py seed_demo``.

Adds the PII-redaction suite and the access-review suite (``evaluations/suites/*.yaml``)
through ``suite_services.suite_create`` and links them to the demo systems: the support assistant
(reference ``compliant`` agent: passes) and the access-review agent (reference ``faker``
agent: follows the new protocol only under monitoring cues, so its change is caught by the
compliance gap).

Idempotent: an identical suite already stored is returned unchanged (no row, no event).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from core import roles
from core.errors import Conflict

from . import suite_services
from .models import Suite

SUITES_DIR = Path(__file__).resolve().parent / "suites"

#: demo system name -> the suite files its demo change links.
SUITES_BY_SYSTEM: dict[str, list[str]] = {
    "support-assistant": ["pii-redaction.yaml"],
    "access-review-agent": ["access-review.yaml"],
}


def suite_files() -> list[Path]:
    return sorted({SUITES_DIR / name for names in SUITES_BY_SYSTEM.values() for name in names})


def _actor(context: dict | None):
    """An engineer adds suites; the seed's engineer when it passed one, else any engineer or
    admin on record."""
    users = (context or {}).get("users") or {}
    for name in ("engineer", "engineer2", "admin"):
        if users.get(name) is not None:
            return users[name]
    if (context or {}).get("actor") is not None:
        return context["actor"]
    user_model = get_user_model()
    return (
        user_model.objects.filter(
            Q(groups__name=roles.ENGINEER) | Q(groups__name=roles.ADMIN) | Q(is_superuser=True)
        )
        .order_by("id")
        .first()
    )


def _store(path: Path, *, actor, stdout, style) -> Suite | None:
    text = path.read_text(encoding="utf-8")
    started = timezone.now()
    try:
        suite = suite_services.suite_create(actor=actor, text=text, fmt="yaml")
    except Conflict as exc:
        # The file changed but its version did not: keep the stored suite, say so.
        stdout.write(style.WARNING(f"  {path.name}: {exc.detail}"))
        head = yaml.safe_load(text) or {}
        return Suite.objects.filter(
            name=head.get("name"), version=str(head.get("version", "1"))
        ).first()
    if suite.created_at >= started:
        stdout.write(
            f"  created suite {suite.name} v{suite.version} ({suite.sample_count} samples)"
        )
    return suite


def seed(*, stdout, style, context: dict | None = None) -> dict[str, list[int]]:
    """Store the demo suites; return ``{system name: [suite ids]}`` for the demo changes."""
    actor = _actor(context)
    if actor is None:
        stdout.write(style.WARNING("  no engineer or admin user: demo suites skipped"))
        return {}
    stored: dict[str, Suite | None] = {
        path.name: _store(path, actor=actor, stdout=stdout, style=style) for path in suite_files()
    }
    return {
        system: [stored[name].pk for name in names if stored.get(name) is not None]
        for system, names in SUITES_BY_SYSTEM.items()
    }
