"""Who may do what with suites and evaluation runs, and which criticalities ask more.

Every such rule of this app lives here (CONTRIBUTING.md, "Where rules live"); the services
enforce them, the views and the API only ask them to decide which buttons to show. The
role names and the criticality list are the workflow's, read from ``changes.permissions``.
"""

from __future__ import annotations

from changes import permissions as change_rules

#: Every criticality, lowest first.
CRITICALITIES = change_rules.CRITICALITIES
is_strict = change_rules.is_strict


def can_add_suites(user) -> bool:
    """Engineers (and admins) upload suites."""
    return change_rules.is_engineer_or_admin(user)


def can_cancel_runs_of(user, change) -> bool:
    """The change's author, or an admin, cancels its evaluation runs."""
    return change_rules.is_author_or_admin(user, change)


def can_cancel(user, run) -> bool:
    """Whether the run page offers "cancel": a live run, to its change's author or an admin."""
    return run.is_live and can_cancel_runs_of(user, run.change)
