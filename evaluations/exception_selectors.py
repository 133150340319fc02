"""Reads for policy exceptions: whether one stands now, the standing ones a run's policy
takes, and what the gate says about runs judged under one (docs/GATE.md, "Policy
exceptions").

"Stands" is re-computed at every read rather than stored, for the same reason approvals
are re-checked when counted: an approver can be deactivated or lose a role, and the change
can be edited, after the approval was given.
"""

from __future__ import annotations

from changes import permissions
from core import roles

from .models import PolicyException


def exceptions_for(change) -> list[PolicyException]:
    return list(
        PolicyException.objects.filter(change=change)
        .select_related("requested_by", "admin_approver", "reviewer_approver")
        .order_by("id")
    )


def problems(exc: PolicyException, change) -> list[str]:
    """Why ``exc`` does not stand for ``change`` now, in words; empty when it stands."""
    out = []
    if exc.voided_at is not None:
        return [f"it was voided: {exc.void_reason}"]
    if exc.content_sha256 != change.content_sha256:
        out.append(
            f"the change was edited after it was requested (hash {exc.content_sha256[:12]}…, "
            f"now {change.content_sha256[:12]}…)"
        )
    if exc.admin_approver_id is None:
        out.append("no admin has approved it")
    else:
        admin = exc.admin_approver
        if not admin.is_active:
            out.append(f"its admin approver {admin.username}'s account is deactivated")
        elif not roles.is_admin(admin):
            out.append(f"its admin approver {admin.username} is no longer an admin")
    if exc.reviewer_approver_id is None:
        out.append("no independent reviewer has approved it")
    else:
        reviewer = exc.reviewer_approver
        check = permissions.check_independence(reviewer, change)
        out += [f"its reviewer {reviewer.username}: {why}" for why in check.third_person]
    return out


def status(exc: PolicyException, change) -> str:
    """ "void", "pending" (approvals missing), "in_effect" or "lapsed" (approved, no longer
    standing: an edit, a deactivated or de-roled approver)."""
    if exc.voided_at is not None:
        return "void"
    if not exc.approved:
        return "pending"
    return "lapsed" if problems(exc, change) else "in_effect"


def approved_words(exc: PolicyException) -> str:
    admin = exc.admin_approver.username if exc.admin_approver_id else "-"
    reviewer = exc.reviewer_approver.username if exc.reviewer_approver_id else "-"
    return f"approved by admin {admin} and reviewer {reviewer}"


def standing_for_policy(change) -> list[dict]:
    """The exceptions that stand for ``change`` now, shaped for ``gates.policy_for``."""
    return [
        {
            "id": exc.pk,
            "reference": exc.reference,
            "key": exc.key,
            "value": exc.value,
            "approved": approved_words(exc),
        }
        for exc in exceptions_for(change)
        if exc.approved and not problems(exc, change)
    ]


def run_exception_reasons(run, change) -> list[str]:
    """Gate reasons for a run judged under policy exceptions that no longer stand: its pass
    rested on a looser threshold, so it only counts while every exception it used stands."""
    used = (run.policy or {}).get("exceptions") or []
    if not used:
        return []
    by_id = {
        e.pk: e
        for e in PolicyException.objects.filter(pk__in=[u.get("id") for u in used]).select_related(
            "admin_approver", "reviewer_approver"
        )
    }
    out = []
    for item in used:
        exc = by_id.get(item.get("id"))
        why = ["it no longer exists"] if exc is None else problems(exc, change)
        if why:
            out.append(
                f"Evaluation run {run.pk} was judged with gate.{item.get('key')} "
                f"{item.get('value')!r} under policy exception {item.get('reference')}, which "
                f"no longer stands: {'; '.join(why)}."
            )
    return out


def run_exception_notes(runs) -> list[str]:
    """What the gate says about runs judged under a policy exception (not a closed gate:
    the words a reviewer and the deploy tool see next to the reasons)."""
    notes = []
    for run in runs:
        for item in (run.policy or {}).get("exceptions") or []:
            notes.append(
                f"Evaluation run {run.pk} used gate.{item.get('key')} {item.get('value')!r} "
                f"instead of the {run.policy.get('criticality')} floor {item.get('floor')!r} "
                f"under policy exception {item.get('reference')} ({item.get('approved')})."
            )
    return notes
