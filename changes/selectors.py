"""Reads. Every list is scoped to what the acting user may see."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from core import roles

from . import gate_context, hooks, permissions, states
from .models import (
    AISystem,
    AuditEvent,
    ChangeRequest,
    ProtocolVersion,
    Review,
    Team,
)


def visible_changes(user) -> QuerySet[ChangeRequest]:
    """Auditors and admins see everything; reviewers and pipelines see every change that has
    left draft; engineers see their teams' systems and their own changes."""
    qs = ChangeRequest.objects.select_related(
        "system", "system__owner_team", "author", "base_protocol", "proposed_protocol"
    )
    if not getattr(user, "is_authenticated", False):
        return qs.none()
    if permissions.sees_all_changes(user):
        return qs
    scope = Q(author=user) | Q(system__owner_team__in=permissions.team_ids(user))
    if roles.has_role(user, roles.REVIEWER) or roles.has_role(user, roles.PIPELINE):
        scope |= ~Q(state=states.DRAFT)
    return qs.filter(scope)


LIST_COLUMNS = (
    "id", "title", "system_id", "system__name", "state", "risk", "change_type", "author_id",
    "author__username", "content_sha256", "revision", "retrospective_pending", "created_at",
    "updated_at", "submitted_at", "deployed_at",
)  # fmt: skip


def change_list(user) -> QuerySet[ChangeRequest]:
    """The visible changes without joins, for the list: it is counted as is, and only the
    page is fetched as rows of ``LIST_COLUMNS`` (no Markdown bodies, no protocol texts, no
    model instances), so the change list stays fast at 10,000s of rows."""
    return visible_changes(user).select_related(None)


def _iso(value):
    # The same text DRF's DateTimeField gives, so list and detail agree.
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def change_summaries(rows) -> list[dict]:
    """Shape ``change_list`` rows as the API's change summary (ChangeSummarySerializer)."""
    return [
        {
            "id": row["id"],
            "reference": f"CR-{row['id']}",
            "title": row["title"],
            "system": row["system_id"],
            "system_name": row["system__name"],
            "state": row["state"],
            "state_label": states.LABELS[row["state"]],
            "risk": row["risk"],
            "change_type": row["change_type"],
            "author": row["author__username"],
            "content_sha256": row["content_sha256"],
            "revision": row["revision"],
            "retrospective_pending": row["retrospective_pending"],
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
            "submitted_at": _iso(row["submitted_at"]),
            "deployed_at": _iso(row["deployed_at"]),
        }
        for row in rows
    ]


def visible_systems(user) -> QuerySet[AISystem]:
    return AISystem.objects.select_related("owner_team").all()


def visible_teams(user) -> QuerySet[Team]:
    return Team.objects.prefetch_related("members").all()


def visible_protocols(user, system: AISystem | None = None) -> QuerySet[ProtocolVersion]:
    """Protocol versions of the systems ``user`` sees (optionally of one system)."""
    qs = ProtocolVersion.objects.select_related("created_by").filter(
        system__in=visible_systems(user)
    )
    return qs.filter(system=system) if system is not None else qs


def change_for(user, pk) -> ChangeRequest:
    """One visible change or ``ChangeRequest.DoesNotExist`` (-> 404, never a 403 leak)."""
    return visible_changes(user).get(pk=pk)


def _standing_facts(change: ChangeRequest, reviewer_ids: list[int]) -> dict[int, dict]:
    """Per reviewer, the membership facts the independence check needs (reviewer role,
    editor of the change, on the author's team), read in one statement: the gate reads them
    for every approval, and three ORM queries per reviewer cost more to build than to run
    (bench ``env_gate``). Plain SQL over the tables' own names; parameters only."""
    if not reviewer_ids:
        return {}
    from django.contrib.auth import get_user_model
    from django.db import connection

    user_groups = get_user_model().groups.through._meta.db_table
    groups = get_user_model().groups.field.related_model._meta.db_table
    editors = ChangeRequest.editors.through._meta.db_table
    members = Team.members.through._meta.db_table
    marks = ", ".join(["%s"] * len(reviewer_ids))
    sql = (
        f"SELECT r.id, "  # noqa: S608 - table names from model metadata; values are parameters
        f"EXISTS (SELECT 1 FROM {user_groups} ug JOIN {groups} g ON g.id = ug.group_id "
        f"WHERE ug.user_id = r.id AND g.name = %s), "
        f"EXISTS (SELECT 1 FROM {editors} e WHERE e.changerequest_id = %s AND e.user_id = r.id), "
        f"EXISTS (SELECT 1 FROM {members} m WHERE m.user_id = r.id AND m.team_id IN "
        f"(SELECT a.team_id FROM {members} a WHERE a.user_id = %s)) "
        f"FROM {get_user_model()._meta.db_table} r WHERE r.id IN ({marks})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [roles.REVIEWER, change.pk, change.author_id, *reviewer_ids])
        rows = cursor.fetchall()
    return {
        pk: {
            "holds_reviewer_role": bool(holds),
            "is_editor": bool(editor),
            "shares_author_team": bool(team),
        }
        for pk, holds, editor, team in rows
    }


def _live_approvals(change: ChangeRequest) -> list[Review]:
    """Approvals of the current content and evaluation, one per reviewer, oldest first,
    each with its reviewer's membership facts (``_standing_facts``)."""
    digest = hooks.evaluation().evaluation_digest(change)
    approvals = change.reviews.select_related("reviewer").filter(
        decision="approve", voided_at__isnull=True, content_sha256=change.content_sha256
    )
    out, seen = [], set()
    for review in approvals.order_by("created_at", "id"):
        if review.evaluation_digest != digest or review.reviewer_id in seen:
            continue
        seen.add(review.reviewer_id)
        out.append(review)
    return out


def approvals_with_standing(change: ChangeRequest) -> list[tuple[Review, list[str]]]:
    """Each live approval with the reasons it no longer counts (empty: it counts).

    Independence is re-checked now, not only when the review was signed: a reviewer who was
    deactivated, lost the reviewer role or joined the author's team no longer counts.
    Read once per gate computation (``gate_context``): the gate, its approval words and the
    reviewer rules all ask.
    """
    return gate_context.memo(change, "approvals_with_standing", lambda: _with_standing(change))


def _with_standing(change: ChangeRequest) -> list[tuple[Review, list[str]]]:
    approvals = _live_approvals(change)
    facts = _standing_facts(change, [review.reviewer_id for review in approvals])
    return [
        (
            review,
            permissions.check_independence(
                review.reviewer, change, known=facts.get(review.reviewer_id)
            ).third_person,
        )
        for review in approvals
    ]


def valid_approvals(change: ChangeRequest) -> list[Review]:
    """Live approvals on the current content and evaluation, from still-independent reviewers."""
    return [review for review, reasons in approvals_with_standing(change) if not reasons]


def approval_standing_reasons(change: ChangeRequest, standing=None) -> list[str]:
    """Why approvals that were given no longer count, and whether an emergency is still
    unconfirmed, in words: shown whenever the gate lacks approvals."""
    reasons = [
        f"The approval by {review.reviewer.username} no longer counts: {'; '.join(why)}."
        for review, why in (approvals_with_standing(change) if standing is None else standing)
        if why
    ]
    if change.is_emergency and not change.emergency_confirmed:
        reasons.append(
            "The emergency has not been confirmed by an independent reviewer, so the "
            "normal approval count applies."
        )
    return reasons


def gate_reasons(change: ChangeRequest) -> list[str]:
    """Every unmet condition for deploying ``change`` now, in words. Empty means deployable."""
    reasons = []
    if change.state != states.APPROVED:
        reasons.append(
            f"The change is '{change.state_label}'; only approved changes can be deployed."
        )
    needed = permissions.required_approvals(change)
    standing = approvals_with_standing(change)
    have = sum(1 for _, why in standing if not why)
    if have < needed:
        reasons.append(
            f"{have} of {needed} required independent approval(s) on the current content "
            f"(hash {change.content_sha256[:12]}…)."
        )
        reasons.extend(approval_standing_reasons(change, standing))
    if change.state not in states.TERMINAL and change.state != states.DEPLOYED:
        reasons.extend(hooks.evaluation().gate_reasons(change))
        for rule in hooks.gate_rules():  # later apps' rules (e.g. blocking discussions)
            reasons.extend(rule(change))
    return reasons


def gate(change: ChangeRequest, environment=None, user=None, blackout_override=False) -> dict:
    """The gate for one environment (default: the last on the system's promotion path), with
    the live version there and the other open changes on the system (docs/ENVIRONMENTS.md).
    The rules share their reads for this one call (``gate_context``)."""
    with gate_context.computing(change):
        return _gate(change, environment, user, blackout_override)


def _gate(change: ChangeRequest, environment, user, blackout_override) -> dict:
    from .env_selectors import environment_gate

    approvals = len(valid_approvals(change))
    env_gate = environment_gate(
        change, environment, user=user, approvals=approvals, blackout_override=blackout_override
    )
    reasons = env_gate["reasons"] if env_gate["environment"] else gate_reasons(change)
    return {
        "deployable": not reasons,
        "reasons": reasons,
        "state": change.state,
        "content_sha256": change.content_sha256,
        "approvals": approvals,
        "approvals_required": permissions.required_approvals(change),
        **env_gate,
        "notes": hooks.evaluation().gate_notes(change),
    }


def dashboard(user) -> dict:
    changes = visible_changes(user)
    awaiting = changes.none()
    if roles.has_role(user, roles.REVIEWER):
        awaiting = (
            changes.filter(state__in=states.REVIEWABLE)
            .exclude(author=user)
            .exclude(reviews__reviewer=user, reviews__voided_at__isnull=True)
        )
    return {
        "mine": changes.filter(Q(author=user) | Q(editors=user)).distinct()[:10],
        "awaiting_review": awaiting[:10],
        "recently_deployed": changes.filter(state=states.DEPLOYED).order_by("-deployed_at")[:10],
        "counts": dict(
            changes.values_list("state").annotate(n=Count("id")).values_list("state", "n")
        ),
    }


def timeline(change: ChangeRequest) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        object_type=ChangeRequest._meta.label_lower, object_id=str(change.pk)
    ).order_by("id")


def audit_events(
    *, verb=None, actor=None, object_type=None, object_id=None, since=None, until=None
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all().order_by("id")
    if verb:
        qs = qs.filter(verb__startswith=verb)
    if actor:
        qs = qs.filter(actor_username=actor)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=str(object_id))
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lte=until)
    return qs


def live_protocol(system: AISystem, environment: str | None = None) -> ProtocolVersion | None:
    """The protocol version live on ``system`` in ``environment`` (default: the furthest
    environment on its path that runs anything), from the live registry."""
    from .env_models import LiveVersion

    rows = LiveVersion.objects.filter(environment__system=system, protocol__isnull=False)
    if environment:
        rows = rows.filter(environment__name=environment)
    row = rows.select_related("protocol").order_by("-environment__order").first()
    return row.protocol if row else None
