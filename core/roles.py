"""Role names (Django groups) and role checks."""

from __future__ import annotations

ENGINEER = "engineer"
REVIEWER = "reviewer"
AUDITOR = "auditor"
ADMIN = "admin"
PIPELINE = "pipeline"
ALL_ROLES = (ENGINEER, REVIEWER, AUDITOR, ADMIN, PIPELINE)


def role_names(user) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._role_names = cached
    return cached


def has_role(user, role: str) -> bool:
    if role == ADMIN and getattr(user, "is_superuser", False):
        return True
    return role in role_names(user)


def is_admin(user) -> bool:
    return has_role(user, ADMIN)
