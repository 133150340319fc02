"""Who may manage a system's ingestion tokens and handle its incidents.

Every such rule of this app lives here (CONTRIBUTING.md, "Where rules live"); roles and team
memberships are the workflow's (``changes.permissions``).
"""

from __future__ import annotations

from changes import permissions as change_rules


def can_manage_tokens(user, system) -> bool:
    """Admins, and members of the system's owning team."""
    if change_rules.can_manage_systems(user):
        return True
    return system.owner_team_id in change_rules.team_ids(user)


def can_handle_incidents(user, system) -> bool:
    """Acknowledge or resolve an incident: the system's team and admins, or whoever may
    deploy (engineers, pipelines), since the fix is a rollback or a deploy."""
    return can_manage_tokens(user, system) or change_rules.can_deploy(user)
