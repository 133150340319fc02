"""Who may do what: role checks and the independence rules for sign-off.

Kept small and pure-ish (reads only memberships) so it can be tested exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import roles

from . import states
from .models import CRITICALITY_CHOICES, CROSS_TEAM_CRITICALITIES, EMERGENCY_MIN_APPROVALS

#: Every criticality, lowest first (the names the models, the API and the CLI accept).
CRITICALITIES: tuple[str, ...] = tuple(value for value, _ in CRITICALITY_CHOICES)
#: The criticalities that ask more: cross-team review, strict suites, staging first.
STRICT_CRITICALITIES = CROSS_TEAM_CRITICALITIES


def is_strict(criticality: str | None) -> bool:
    """Whether a system of ``criticality`` gets the stricter rules (high and critical)."""
    return criticality in STRICT_CRITICALITIES


def is_engineer_or_admin(user) -> bool:
    """Engineers write protocols, suites and runs; admins may do what they do."""
    return roles.has_role(user, roles.ENGINEER) or roles.is_admin(user)


def is_author_or_admin(user, change) -> bool:
    """The change's author, or an admin (withdraw, close, cancel its runs)."""
    return change.author_id == getattr(user, "pk", None) or roles.is_admin(user)


def is_open_for_review(change, decision: str | None = None) -> bool:
    """Whether reviews are taken now: awaiting review or approved, or deployed with its
    retrospective review still owed (a confirmed emergency), which only an approval
    completes (``decision``, when given, is checked against that)."""
    if change.state in states.REVIEWABLE:
        return True
    return (
        change.state == states.DEPLOYED
        and change.retrospective_pending
        and decision in (None, "approve")
    )


def required_approvals(change) -> int:
    """Approvals the change needs now.

    A confirmed emergency (an independent reviewer confirmed this exact content) may deploy
    on the criticality's emergency minimum; the rest is recorded retrospectively. An emergency
    only its author (or an editor) declared lowers nothing. A rule, so it lives here: the
    selectors read it without importing the services.
    """
    normal = change.system.approvals_required
    if not change.emergency_confirmed:
        return normal
    return min(normal, EMERGENCY_MIN_APPROVALS[change.system.criticality])


@dataclass
class IndependenceCheck:
    """The facts checked before a reviewer may sign, recorded on the review and attestation.

    The same check runs again whenever an approval is counted (``selectors.valid_approvals``),
    so an approval stops counting when its signer is deactivated or loses the reviewer role.
    ``reasons`` address the user ("You ..."); ``third_person`` says the same about them.
    """

    holds_reviewer_role: bool
    not_author: bool
    not_editor: bool
    cross_team_required: bool
    not_on_author_team: bool
    is_active: bool = True
    not_protocol_author: bool = True
    reasons: list[str] = field(default_factory=list)
    third_person: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {
            "holds_reviewer_role": self.holds_reviewer_role,
            "not_author": self.not_author,
            "not_editor": self.not_editor,
            "not_protocol_author": self.not_protocol_author,
            "is_active": self.is_active,
            "cross_team_required": self.cross_team_required,
            "not_on_author_team": self.not_on_author_team,
        }


def team_ids(user) -> set[int]:
    cached = getattr(user, "_team_ids", None)
    if cached is None:
        cached = set(user.teams.values_list("id", flat=True))
        user._team_ids = cached
    return cached


def protocol_author_ids(change) -> set[int]:
    """Who wrote the base or the proposed protocol version: they may not sign the change."""
    return {
        pk
        for pk in (
            getattr(change.base_protocol, "created_by_id", None),
            getattr(change.proposed_protocol, "created_by_id", None),
        )
        if pk is not None
    }


def check_independence(user, change, *, known: dict | None = None) -> IndependenceCheck:
    """Every reason ``user`` may not sign ``change``. Admins get no bypass.

    ``known`` carries the three membership facts already read with the approvals
    (``selectors.approvals_with_standing`` annotates them on the reviews query, so the gate
    reads approvals and their reviewers' standing in one query): ``holds_reviewer_role``,
    ``is_editor`` and ``shares_author_team``. The rules are the same either way."""
    if known is not None:
        holds = bool(known["holds_reviewer_role"])
        not_editor = not known["is_editor"]
        not_same_team = not known["shares_author_team"]
    else:
        holds = roles.has_role(user, roles.REVIEWER)
        not_editor = not change.editors.filter(pk=user.pk).exists()
        not_same_team = not (team_ids(user) & team_ids(change.author))
    active = bool(getattr(user, "is_active", False))
    not_author = change.author_id != user.pk
    not_protocol_author = user.pk not in protocol_author_ids(change)
    cross_required = change.system.requires_cross_team_review
    reasons, third = [], []

    def fail(you: str, they: str) -> None:
        reasons.append(you)
        third.append(they)

    if not active:
        fail("Your account is deactivated.", "their account is deactivated")
    if not holds:
        fail("You do not hold the reviewer role.", "they no longer hold the reviewer role")
    if not not_author:
        fail("Authors cannot review their own change.", "they are the change's author")
    if not not_editor:
        fail("You edited this change, so you cannot review it.", "they edited the change")
    if not not_protocol_author:
        fail(
            "You wrote the base or the proposed protocol version, so you cannot review it.",
            "they wrote the base or the proposed protocol version",
        )
    if cross_required and not not_same_team:
        fail(
            f"This is a {change.system.criticality}-criticality system: the reviewer must not "
            "be on the author's team.",
            "they are on the author's team",
        )
    return IndependenceCheck(
        holds,
        not_author,
        not_editor,
        cross_required,
        not_same_team,
        is_active=active,
        not_protocol_author=not_protocol_author,
        reasons=reasons,
        third_person=third,
    )


def can_create_change(user, system) -> bool:
    return roles.has_role(user, roles.ENGINEER)


def can_edit_change(user, change) -> bool:
    """The author, or an engineer on the owning team, while the change is editable."""
    if change.state not in states.EDITABLE:
        return False
    if change.author_id == user.pk:
        return True
    return roles.has_role(user, roles.ENGINEER) and change.system.owner_team_id in team_ids(user)


def can_submit_change(user, change) -> bool:
    return change.author_id == user.pk


def can_withdraw_change(user, change) -> bool:
    return is_author_or_admin(user, change)


def can_close_change(user, change) -> bool:
    """Closing a deployed change: its author or an admin."""
    return change.state == states.DEPLOYED and is_author_or_admin(user, change)


def can_deploy(user) -> bool:
    return roles.has_role(user, roles.ENGINEER) or roles.has_role(user, roles.PIPELINE)


def can_manage_systems(user) -> bool:
    return roles.is_admin(user)


def can_create_protocol(user, system) -> bool:
    return is_engineer_or_admin(user)


def can_read_audit(user) -> bool:
    return roles.has_role(user, roles.AUDITOR) or roles.is_admin(user)


def sees_all_changes(user) -> bool:
    return roles.has_role(user, roles.AUDITOR) or roles.is_admin(user)
