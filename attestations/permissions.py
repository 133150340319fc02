"""Who may list every attestation, verify uploads on the web page and retry a render.

Every such rule of this app lives here (CONTRIBUTING.md, "Where rules live"); which status
may follow which is the state graph in ``attestations/states.py``.
"""

from __future__ import annotations

from changes import permissions as change_rules
from core import roles


def can_list_all(user) -> bool:
    """The cross-change list and the verify page: auditors and admins."""
    return getattr(user, "is_authenticated", False) and change_rules.can_read_audit(user)


def can_retry(user) -> bool:
    """Retrying a failed render is an admin's action."""
    return roles.is_admin(user)
