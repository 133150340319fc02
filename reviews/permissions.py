"""Who may ask for reviewers, talk on a change, resolve a thread, and manage reviewer rules
and webhooks; and while which states a change takes review requests.

Every such rule of this app lives here (CONTRIBUTING.md, "Where rules live"). Role names and
memberships are the workflow's (``core.roles``, ``changes.permissions``).
"""

from __future__ import annotations

from changes import states
from core import roles

#: A change in these states takes no more review requests.
CLOSED = frozenset({states.WITHDRAWN, states.REJECTED, states.CLOSED})
#: Who may comment on a change's discussion.
TALKING_ROLES = (roles.ENGINEER, roles.REVIEWER, roles.ADMIN)


def takes_reviews(change) -> bool:
    """Whether reviewers may still be asked: any state before closing, and a deployed change
    only while its retrospective review is owed."""
    if change.state == states.DEPLOYED:
        return change.retrospective_pending
    return change.state not in CLOSED


def may_request(user, change) -> bool:
    """The author, or someone who edited the change, asks for reviews."""
    return change.author_id == user.pk or change.editors.filter(pk=user.pk).exists()


def may_comment(user) -> bool:
    return any(roles.has_role(user, r) for r in TALKING_ROLES)


def may_resolve(user, thread, change) -> bool:
    """The thread's author, the change's author or an admin resolves or reopens a thread."""
    return user.pk in (thread.author_id, change.author_id) or roles.is_admin(user)


def may_manage_rules(user) -> bool:
    """Reviewer rule sets are admin-edited."""
    return roles.is_admin(user)


def may_manage_webhooks(user) -> bool:
    """Webhook endpoints (register, list, redeliver) are admin-managed."""
    return roles.is_admin(user)
