"""Reviewer rules per system (issue 14, item 1): who may count, how many from which group.

Rules add to the independence rules (``changes.permissions``) and the approval count; they
never replace them. Only *valid approvals* (``changes.selectors.valid_approvals``: live,
on the current content and evaluation, from a still-independent reviewer) count, so an
admin gets no bypass: an admin's approval counts only where an admin meets the rule.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from changes import audit, permissions
from changes.models import AISystem, ChangeRequest, Team
from changes.selectors import valid_approvals
from core import roles
from core.errors import NotAllowed, ValidationFailed

from .models import ReviewerRuleSet
from .permissions import may_manage_rules

KINDS = ("team", "users", "any")
MAX_RULES = 20


def current(system_id: int) -> ReviewerRuleSet | None:
    return ReviewerRuleSet.objects.filter(system_id=system_id).order_by("-version").first()


def _reviewers():
    return get_user_model().objects.filter(groups__name=roles.REVIEWER, is_active=True).distinct()


def _clean(rules) -> list[dict]:
    if not isinstance(rules, list):
        raise ValidationFailed("rules: a list of rules is expected.")
    if len(rules) > MAX_RULES:
        raise ValidationFailed(f"rules: at most {MAX_RULES}.")
    out = []
    for i, rule in enumerate(rules, 1):
        if not isinstance(rule, dict):
            raise ValidationFailed(f"rules.{i}: each rule is an object.")
        kind, count = rule.get("kind"), rule.get("count", 1)
        if kind not in KINDS:
            raise ValidationFailed(f"rules.{i}.kind: must be one of {', '.join(KINDS)}.")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10:
            raise ValidationFailed(f"rules.{i}.count: a whole number from 1 to 10.")
        name = str(rule.get("name") or f"rule {i}")[:100]
        clean = {"name": name, "kind": kind, "count": count}
        if kind == "team":
            team = (
                Team.objects.filter(pk=rule.get("team")).first()
                if str(rule.get("team")).isdigit()
                else None
            )
            if team is None:
                raise ValidationFailed(f"rules.{i}.team: no such team.")
            clean["team"] = team.pk
        if kind == "users":
            users = rule.get("users")
            if (
                not isinstance(users, list)
                or not users
                or not all(isinstance(u, int) and not isinstance(u, bool) for u in users)
            ):
                raise ValidationFailed(f"rules.{i}.users: a non-empty list of user ids.")
            found = set(get_user_model().objects.filter(pk__in=users).values_list("pk", flat=True))
            if found != set(users):
                raise ValidationFailed(f"rules.{i}.users: unknown user id(s).")
            clean["users"] = sorted(set(users))
        out.append(clean)
    return out


def candidates(rule: dict, system: AISystem, *, author_team_counts: bool) -> set[int]:
    """Reviewer-role, active people who could ever count toward ``rule`` on ``system``.

    Without knowing the author, the owning team stands in for the author's team (changes are
    filed by the owning team's engineers); high/critical systems exclude it anyway."""
    people = _reviewers()
    if rule["kind"] == "team":
        people = people.filter(teams=rule["team"])
    elif rule["kind"] == "users":
        people = people.filter(pk__in=rule["users"])
    if not author_team_counts or system.requires_cross_team_review:
        people = people.exclude(teams=system.owner_team_id)
    return set(people.values_list("pk", flat=True))


def describe(rule: dict) -> str:
    if rule["kind"] == "team":
        team = Team.objects.filter(pk=rule["team"]).values_list("name", flat=True).first()
        return f"{rule['count']} approval(s) from team {team}"
    if rule["kind"] == "users":
        names = get_user_model().objects.filter(pk__in=rule["users"]).order_by("username")
        return f"{rule['count']} approval(s) from {', '.join(u.username for u in names)}"
    return f"{rule['count']} approval(s) from any independent reviewer"


@transaction.atomic
def ruleset_save(*, actor, system: AISystem, rules, author_team_counts=True) -> ReviewerRuleSet:
    """Save a new version (admin). A rule set that can never be met is refused (400) with a
    reason per unsatisfiable rule. Writes ``reviewer_rules.saved``."""
    if not may_manage_rules(actor):
        raise NotAllowed("Only admins edit reviewer rules.")
    if not isinstance(author_team_counts, bool):
        raise ValidationFailed("author_team_counts: must be true or false.")
    clean = _clean(rules)
    reasons = []
    for rule in clean:
        have = len(candidates(rule, system, author_team_counts=author_team_counts))
        if have < rule["count"]:
            reasons.append(
                f"Rule '{rule['name']}' needs {describe(rule)}, but only {have} eligible "
                f"reviewer(s) could ever give one."
            )
    if reasons:
        raise ValidationFailed(
            "rules: this rule set can never be met. " + " ".join(reasons),
            code="unsatisfiable",
            reasons=reasons,
        )
    AISystem.objects.select_for_update().filter(pk=system.pk).first()  # serialise versions
    previous = current(system.pk)
    ruleset = ReviewerRuleSet.objects.create(
        system=system,
        version=(previous.version + 1) if previous else 1,
        rules=clean,
        author_team_counts=author_team_counts,
        created_by=actor,
    )
    audit.append(
        actor=actor,
        verb="reviewer_rules.saved",
        obj=system,
        data={
            "version": ruleset.version,
            "rules": clean,
            "author_team_counts": author_team_counts,
        },
    )
    return ruleset


def counts_for(rule: dict, reviewer, change: ChangeRequest, author_team_counts: bool) -> bool:
    if not author_team_counts and permissions.team_ids(reviewer) & permissions.team_ids(
        change.author
    ):
        return False
    if rule["kind"] == "team":
        return rule["team"] in permissions.team_ids(reviewer)
    if rule["kind"] == "users":
        return reviewer.pk in rule["users"]
    return True


def unmet(change: ChangeRequest) -> list[str]:
    """The gate rule: every reviewer rule of the change's system not met, in words."""
    ruleset = current(change.system_id)
    if ruleset is None:
        return []
    approvals = valid_approvals(change)
    reasons = []
    for rule in ruleset.rules:
        have = sum(
            1
            for review in approvals
            if counts_for(rule, review.reviewer, change, ruleset.author_team_counts)
        )
        if have < rule["count"]:
            reasons.append(
                f"Reviewer rule '{rule['name']}' (v{ruleset.version}): {have} of "
                f"{describe(rule)} on the current content."
            )
    return reasons
