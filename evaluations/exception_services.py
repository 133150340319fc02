"""Writes for policy exceptions: request, approve (admin, then or before an independent
reviewer), withdraw, and void on edit. One transaction each, the change row locked first,
one audit event per step on the change (so the change's timeline shows them). Design
notes: docs/GATE.md, "Policy exceptions"."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from changes import audit, permissions, states
from core import roles
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import exception_selectors, gates
from .models import PolicyException

MAX_REASON = 5000


def _lock(change_pk):
    from changes.services import lock_change

    return lock_change(change_pk)


def _event(actor, verb, change, exc, **data):
    audit.append(
        actor=actor,
        verb=verb,
        obj=change,
        data={
            "exception": exc.pk,
            "reference": exc.reference,
            "key": exc.key,
            "value": exc.value,
            "floor": exc.floor,
            "content_sha256": exc.content_sha256,
            **data,
        },
    )


def _editable(change, what: str) -> None:
    if change.state not in states.EDITABLE_IN_PLACE:
        raise Conflict(
            f"A policy exception is {what} while the change can be edited in place (draft, "
            f"changes requested or evaluation failed); {change.reference} is "
            f"'{change.state_label}'. Its runs are created at submission, so an exception "
            "only affects the next submission.",
            code="not_editable",
        )


@transaction.atomic
def policy_exception_request(*, actor, change_request, key, value, reason) -> PolicyException:
    """An engineer who may edit the change asks to loosen one gate threshold for it.
    Writes ``policy_exception.requested``."""
    change = _lock(change_request.pk)
    if not permissions.can_edit_change(actor, change):
        raise NotAllowed("Only the author or an engineer on the owning team may request one.")
    _editable(change, "requested")
    criticality = change.system.criticality
    problem = gates.exception_problem(criticality, key, value)
    if problem:
        raise ValidationFailed(problem, fields={problem.split(":")[0]: [problem]})
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > MAX_REASON:
        raise ValidationFailed(
            f"reason: say why the floor should not apply (1 to {MAX_REASON} characters).",
            fields={"reason": ["Required."]},
        )
    open_one = next(
        (
            e
            for e in exception_selectors.exceptions_for(change)
            if e.key == key and e.voided_at is None and e.content_sha256 == change.content_sha256
        ),
        None,
    )
    if open_one is not None:
        raise Conflict(
            f"{open_one.reference} already asks for {key} on this content; withdraw it first.",
            code="exception_exists",
        )
    exc = PolicyException.objects.create(
        change=change,
        key=key,
        value=value,
        floor=gates.DEFAULT_POLICIES[criticality][key],
        criticality=criticality,
        reason=reason,
        content_sha256=change.content_sha256,
        requested_by=actor,
    )
    _event(actor, "policy_exception.requested", change, exc, reason=reason)
    return exc


def admin_refusals(actor, change, exc) -> list[str]:
    out = []
    if not getattr(actor, "is_active", False):
        out.append("Your account is deactivated.")
    if not roles.is_admin(actor):
        out.append("Only an admin may give the admin approval.")
    if actor.pk in {change.author_id, exc.requested_by_id} | permissions.protocol_author_ids(
        change
    ):
        out.append("The author, the requester or a protocol author cannot approve it.")
    if actor.pk == exc.reviewer_approver_id:
        out.append("You gave the reviewer approval; the admin approval needs someone else.")
    return out


def reviewer_refusals(actor, change, exc) -> list[str]:
    out = list(permissions.check_independence(actor, change).reasons)
    if actor.pk == exc.requested_by_id and actor.pk != change.author_id:
        out.append("You requested this exception, so you cannot approve it.")
    if actor.pk == exc.admin_approver_id:
        out.append("You gave the admin approval; the reviewer approval needs someone else.")
    return out


ROLES = {"admin": admin_refusals, "reviewer": reviewer_refusals}


@transaction.atomic
def policy_exception_approve(*, actor, exception, as_role: str) -> PolicyException:
    """Give the admin or the independent reviewer approval (``as_role``). The exception
    takes effect when both are given, by two different people, on the content it was
    requested for. Writes ``policy_exception.approved`` (with ``in_effect``)."""
    if as_role not in ROLES:
        raise ValidationFailed("as_role: 'admin' or 'reviewer'.", fields={"as_role": ["?"]})
    change = _lock(exception.change_id)
    exc = PolicyException.objects.select_for_update().get(pk=exception.pk)
    if exc.voided_at is not None:
        raise Conflict(f"{exc.reference} is void: {exc.void_reason}", code="exception_void")
    if exc.content_sha256 != change.content_sha256:
        raise Conflict(
            f"{exc.reference} was requested for content {exc.content_sha256[:12]}…; the change "
            "was edited since, so it cannot take effect: request a new one.",
            code="exception_stale",
        )
    _editable(change, "approved")
    slot = "admin_approver_id" if as_role == "admin" else "reviewer_approver_id"
    if getattr(exc, slot) is not None:
        raise Conflict(f"{exc.reference} already has its {as_role} approval.", code="approved")
    refusals = ROLES[as_role](actor, change, exc)
    if refusals:
        raise NotAllowed(
            f"You cannot give the {as_role} approval of {exc.reference}.", reasons=refusals
        )
    now = timezone.now()
    if as_role == "admin":
        exc.admin_approver, exc.admin_approved_at = actor, now
    else:
        exc.reviewer_approver, exc.reviewer_approved_at = actor, now
    exc.save(update_fields=[slot.removesuffix("_id"), f"{as_role}_approved_at"])
    _event(actor, "policy_exception.approved", change, exc, role=as_role, in_effect=exc.approved)
    return exc


@transaction.atomic
def policy_exception_withdraw(*, actor, exception) -> PolicyException:
    """The requester, the author or an admin withdraws it. Writes ``policy_exception.voided``."""
    change = _lock(exception.change_id)
    exc = PolicyException.objects.select_for_update().get(pk=exception.pk)
    if actor.pk not in {exc.requested_by_id, change.author_id} and not roles.is_admin(actor):
        raise NotAllowed("Only the requester, the author or an admin may withdraw it.")
    if exc.voided_at is not None:
        raise Conflict(f"{exc.reference} is already void.", code="exception_void")
    _void(exc, change, actor, f"withdrawn by {actor.username}")
    return exc


def _void(exc, change, actor, reason):
    exc.voided_at, exc.void_reason = timezone.now(), reason
    exc.save(update_fields=["voided_at", "void_reason"])
    _event(actor, "policy_exception.voided", change, exc, reason=reason)


@transaction.atomic
def void_stale(change_id: int) -> int:
    """Void every exception of the change requested for content it no longer has (an edit,
    a rebase, new stages): the record says so, as for voided approvals. The gate never
    relied on this (``problems`` compares hashes); it keeps the record honest."""
    stale = PolicyException.objects.filter(change_id=change_id, voided_at__isnull=True)
    if not stale.exists():
        return 0
    change = _lock(change_id)
    n = 0
    for exc in stale.exclude(content_sha256=change.content_sha256).select_for_update():
        _void(exc, change, None, "the change was edited after it was requested")
        n += 1
    return n


def on_audit_event(event) -> None:
    """Listener (``changes.hooks``): after a change's content moves, void stale exceptions
    once the writer commits (never inside, never failing it)."""
    if event.object_type != "changes.changerequest" or not str(event.verb).startswith(
        ("change.updated", "change.rebased", "change.stages_set", "change.edited")
    ):
        return
    change_id = int(event.object_id)
    transaction.on_commit(lambda: void_stale(change_id), robust=True)
