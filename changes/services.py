"""Every write in the workflow. One transaction per call, named ``<entity>_<verb>``.

Each transition follows one recipe: lock the row, ``assert_transition``, save with
``update_fields``, append exactly one audit event for the move, schedule side effects with
``transaction.on_commit`` (through the hooks in ``changes.hooks``).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from core import roles, throttle
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import audit, content, hooks, permissions, states
from .models import (
    AISystem,
    ChangeRequest,
    Deployment,
    ProtocolVersion,
    Review,
    Team,
)
from .permissions import CRITICALITIES, required_approvals
from .selectors import valid_approvals

CHANGE_TYPES = {c for c, _ in ChangeRequest.TYPE_CHOICES}
TEXT_LIMITS = {
    "title": 200,
    "rationale": 50_000,
    "test_plan": 50_000,
    "rollout_plan": 20_000,
    "backout_plan": 20_000,
}
REQUIRED_TEXT = ("title", "rationale", "test_plan")


# --- teams and systems -------------------------------------------------------------------


@transaction.atomic
def team_create(*, actor, name: str, members=()) -> Team:
    """Create a team (admin). Writes ``team.created``."""
    if not roles.is_admin(actor):
        raise NotAllowed("Only admins manage teams.")
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("name: a team needs a name.", fields={"name": ["Required."]})
    if Team.objects.filter(name=name).exists():
        raise Conflict(f"A team named '{name}' already exists.", code="duplicate")
    team = Team.objects.create(name=name)
    team.members.set(members)
    audit.append(actor=actor, verb="team.created", obj=team, data={"name": name})
    return team


def _validate_target(target) -> dict:
    if not isinstance(target, dict):
        raise ValidationFailed('target: must be an object such as {"kind": "reference"}.')
    return hooks.evaluation().validate_target(target)


@transaction.atomic
def system_create(
    *,
    actor,
    name: str,
    owner_team: Team,
    criticality: str = "medium",
    target: dict | None = None,
    description: str = "",
    required_approvals: int | None = None,
) -> AISystem:
    """Register an AI system (admin). Writes ``system.created``; the target keeps no secrets."""
    if not permissions.can_manage_systems(actor):
        raise NotAllowed("Only admins register AI systems.")
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("name: a system needs a name.", fields={"name": ["Required."]})
    if criticality not in CRITICALITIES:
        raise ValidationFailed(
            f"criticality: must be one of {', '.join(sorted(CRITICALITIES))}.",
            fields={"criticality": ["Invalid choice."]},
        )
    if required_approvals is not None and not 1 <= int(required_approvals) <= 10:
        raise ValidationFailed("required_approvals: must be between 1 and 10.")
    # name and description are shown to every user: no secret may be stored in them
    hooks.evaluation().refuse_secret_text({"name": name, "description": description or ""})
    if AISystem.objects.filter(name=name).exists():
        raise Conflict(f"A system named '{name}' already exists.", code="duplicate")
    target = _validate_target(target or {"kind": "reference", "agent": "compliant"})
    system = AISystem.objects.create(
        name=name,
        owner_team=owner_team,
        criticality=criticality,
        target=target,
        description=description,
        required_approvals=required_approvals,
    )
    audit.append(
        actor=actor,
        verb="system.created",
        obj=system,
        data={"name": name, "criticality": criticality, "target_kind": target.get("kind")},
    )
    return system


@transaction.atomic
def protocol_version_create(
    *, actor, system: AISystem, version: str, body: str, system_prompt: str
) -> ProtocolVersion:
    """Add an immutable protocol version. Writes ``protocol.created``."""
    if not permissions.can_create_protocol(actor, system):
        raise NotAllowed("Only engineers add protocol versions.")
    _reject_nul({"version": version, "body": body, "system_prompt": system_prompt})
    version = (version or "").strip()
    errors = {}
    if not version:
        errors["version"] = ["Required."]
    if not (system_prompt or "").strip():
        errors["system_prompt"] = ["Required: the system prompt is what the model is given."]
    if errors:
        field, msgs = next(iter(errors.items()))
        raise ValidationFailed(f"{field}: {msgs[0]}", fields=errors)
    if ProtocolVersion.objects.filter(system=system, version=version).exists():
        raise Conflict(
            f"{system.name} already has a protocol version '{version}'; versions are immutable.",
            code="duplicate",
        )
    protocol = ProtocolVersion.objects.create(
        system=system,
        version=version,
        body=body or "",
        system_prompt=system_prompt,
        content_sha256=content.protocol_sha256(
            version=version, body=body or "", system_prompt=system_prompt
        ),
        created_by=actor,
    )
    audit.append(
        actor=actor,
        verb="protocol.created",
        obj=protocol,
        data={"system": system.pk, "version": version, "sha256": protocol.content_sha256},
    )
    return protocol


# --- change requests ---------------------------------------------------------------------


def _clean_expected_changes(value) -> list[dict]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValidationFailed(
            "expected_changes: must be a list of {behaviour, before, after}.",
            fields={"expected_changes": ["Must be a list."]},
        )
    cleaned = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValidationFailed(f"expected_changes[{i}]: must be an object.")
        row = {k: str(item.get(k, "") or "").strip() for k in ("behaviour", "before", "after")}
        unknown = set(item) - {"behaviour", "before", "after"}
        if unknown:
            raise ValidationFailed(
                f"expected_changes[{i}]: unknown field(s) {', '.join(sorted(unknown))}."
            )
        if not row["behaviour"]:
            raise ValidationFailed(f"expected_changes[{i}].behaviour: required.")
        if len(row["behaviour"]) + len(row["before"]) + len(row["after"]) > 5000:
            raise ValidationFailed(f"expected_changes[{i}]: too long (5,000 characters max).")
        cleaned.append(row)
    return cleaned


def _reject_nul(fields: dict) -> None:
    """NUL characters cannot be stored in PostgreSQL text: refuse them as bad input."""
    for name, value in fields.items():
        text = value if isinstance(value, str) else repr(value)
        if "\x00" in text:
            raise ValidationFailed(
                f"{name}: NUL characters are not allowed.", fields={name: ["NUL character."]}
            )


def _clean_fields(data: dict, *, partial: bool) -> dict:
    _reject_nul(data)
    cleaned = {}
    for field, limit in TEXT_LIMITS.items():
        if field in data:
            value = str(data[field] or "").strip() if field == "title" else str(data[field] or "")
            if len(value) > limit:
                raise ValidationFailed(f"{field}: at most {limit:,} characters.")
            cleaned[field] = value
    for field in REQUIRED_TEXT:
        if (field in cleaned or not partial) and not cleaned.get(field, "").strip():
            raise ValidationFailed(f"{field}: required.", fields={field: ["Required."]})
    if "risk" in data:
        if data["risk"] not in CRITICALITIES:
            raise ValidationFailed(f"risk: must be one of {', '.join(sorted(CRITICALITIES))}.")
        cleaned["risk"] = data["risk"]
    if "change_type" in data:
        if data["change_type"] not in CHANGE_TYPES:
            raise ValidationFailed(
                f"change_type: must be one of {', '.join(sorted(CHANGE_TYPES))}."
            )
        cleaned["change_type"] = data["change_type"]
    if "expected_changes" in data:
        cleaned["expected_changes"] = _clean_expected_changes(data["expected_changes"])
    return cleaned


def _check_protocols(system, base, proposed) -> None:
    if base.system_id != system.pk or proposed.system_id != system.pk:
        raise ValidationFailed(
            "proposed_protocol: both protocol versions must belong to the change's system."
        )
    if base.pk == proposed.pk:
        raise ValidationFailed(
            "proposed_protocol: must differ from the base protocol.",
            fields={"proposed_protocol": ["Must differ from base_protocol."]},
        )


@transaction.atomic
def change_request_create(
    *,
    actor,
    system: AISystem,
    base_protocol: ProtocolVersion,
    proposed_protocol: ProtocolVersion,
    suites: list[int] | None = None,
    **fields,
) -> ChangeRequest:
    """File a change in ``draft``. Writes ``change.created``."""
    if not permissions.can_create_change(actor, system):
        raise NotAllowed("Only engineers file protocol changes.")
    unknown = set(fields) - set(TEXT_LIMITS) - {"risk", "change_type", "expected_changes"}
    if unknown:
        raise ValidationFailed(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    cleaned = _clean_fields(fields, partial=False)
    _check_protocols(system, base_protocol, proposed_protocol)
    change = ChangeRequest(
        system=system,
        base_protocol=base_protocol,
        proposed_protocol=proposed_protocol,
        author=actor,
        state=states.DRAFT,
        **cleaned,
    )
    change.content_sha256 = "pending"
    change.save()
    hooks.evaluation().link_suites(change, list(suites or []))
    change.content_sha256 = content.content_sha256(change)
    change.save(update_fields=["content_sha256"])
    audit.append(
        actor=actor,
        verb="change.created",
        obj=change,
        data={"title": change.title, "content_sha256": change.content_sha256},
    )
    return change


def lock_change(change_id: int) -> ChangeRequest:
    """Re-read and lock the change row for the rest of the transaction."""
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("system", "base_protocol", "proposed_protocol", "author")
        .get(pk=change_id)
    )


def _move(change: ChangeRequest, target: str, *, actor, verb: str, data=None, fields=()) -> None:
    """Assert, save the state (and ``fields``), and append the transition's one audit event."""
    source = change.state
    states.assert_transition(source, target)
    change.state = target
    change.save(update_fields=["state", "updated_at", *fields])
    audit.append(
        actor=actor,
        verb=verb,
        obj=change,
        data={"from": source, "to": target, **(data or {})},
    )


def _void_approvals(change: ChangeRequest, *, actor, reason: str) -> list[int]:
    live = list(
        change.reviews.filter(decision="approve", voided_at__isnull=True).values_list(
            "id", flat=True
        )
    )
    if live:
        Review.objects.filter(pk__in=live).update(voided_at=timezone.now(), voided_reason=reason)
        audit.append(
            actor=actor,
            verb="review.voided",
            obj=change,
            data={"reviews": live, "reason": reason},
        )
    return live


@transaction.atomic
def change_request_update(*, actor, change_request: ChangeRequest, data: dict) -> ChangeRequest:
    """Edit an editable change. Writes ``change.edited``; voids approvals when the content
    hash moves (``review.voided``); an edit after evaluation sends the change back to draft."""
    change = lock_change(change_request.pk)
    if change.state not in states.EDITABLE:
        raise Conflict(
            f"A change in state '{change.state_label}' cannot be edited.", code="not_editable"
        )
    if not permissions.can_edit_change(actor, change):
        raise NotAllowed("Only the author or an engineer on the owning team may edit this change.")
    data = dict(data)
    suites = data.pop("suites", None)
    system = data.pop("system", None)
    if system is not None and system.pk != change.system_id:
        raise ValidationFailed("system: a change cannot move to another system.")
    base = data.pop("base_protocol", change.base_protocol)
    proposed = data.pop("proposed_protocol", change.proposed_protocol)
    unknown = set(data) - set(TEXT_LIMITS) - {"risk", "change_type", "expected_changes"}
    if unknown:
        raise ValidationFailed(f"Unknown or read-only field(s): {', '.join(sorted(unknown))}.")
    cleaned = _clean_fields(data, partial=True)
    _check_protocols(change.system, base, proposed)
    old_hash = change.content_sha256
    moved = {
        name
        for name, chosen in (("base_protocol", base), ("proposed_protocol", proposed))
        if chosen.pk != getattr(change, f"{name}_id")
    }
    for field, value in cleaned.items():
        setattr(change, field, value)
    change.base_protocol = base
    change.proposed_protocol = proposed
    if suites is not None:
        hooks.evaluation().link_suites(change, list(suites))
    change.content_sha256 = content.content_sha256(change)
    if change.content_sha256 == old_hash:
        return change  # nothing a reviewer signs has changed: no revision, no event
    change.revision += 1
    change.save(
        update_fields=[
            *cleaned,
            "base_protocol",
            "proposed_protocol",
            "content_sha256",
            "revision",
            "updated_at",
        ]
    )
    if actor.pk != change.author_id:
        change.editors.add(actor)
    _void_approvals(change, actor=actor, reason="The change was edited.")
    changed = sorted(set(cleaned) | moved | ({"suites"} if suites is not None else set()))
    event = {"fields": changed, "old_sha256": old_hash, "new_sha256": change.content_sha256}
    if change.state in states.EDITABLE_IN_PLACE:
        audit.append(actor=actor, verb="change.edited", obj=change, data={**event})
    else:
        _move(change, states.DRAFT, actor=actor, verb="change.edited", data={**event})
    return change


@transaction.atomic
def content_part_changed(
    *, actor, change_request: ChangeRequest, part: str, verb: str, data: dict
) -> ChangeRequest:
    """Another app edited a part of the signed content it declares
    (``hooks.register_content_part``), already saved in this transaction: re-hash, and if the
    hash moved, count a revision and void approvals exactly as a field edit does (an approved
    change goes back to draft). ``verb`` is the edit's one audit event, carrying ``data``."""
    change = lock_change(change_request.pk)
    if change.state not in states.EDITABLE:
        raise Conflict(
            f"A change in state '{change.state_label}' cannot be edited.", code="not_editable"
        )
    old_hash = change.content_sha256
    change.content_sha256 = content.content_sha256(change)
    event = {**data, "fields": [part], "old_sha256": old_hash, "new_sha256": change.content_sha256}
    if change.content_sha256 == old_hash:
        return change
    change.revision += 1
    change.save(update_fields=["content_sha256", "revision", "updated_at"])
    if actor.pk != change.author_id:
        change.editors.add(actor)
    _void_approvals(change, actor=actor, reason=f"The change's {part} was edited.")
    if change.state in states.EDITABLE_IN_PLACE:
        audit.append(actor=actor, verb=verb, obj=change, data=event)
    else:
        _move(change, states.DRAFT, actor=actor, verb=verb, data=event)
    return change


@transaction.atomic
def change_request_submit(*, actor, change_request: ChangeRequest) -> ChangeRequest:
    """draft/changes_requested/evaluation_failed -> submitted -> evaluating.

    Writes ``change.submitted`` and ``change.evaluation_started``; the evaluation hook creates
    one run per linked suite in this transaction and enqueues them on commit.
    """
    change = lock_change(change_request.pk)
    if not permissions.can_submit_change(actor, change):
        raise NotAllowed("Only the author submits a change.")
    states.assert_transition(change.state, states.SUBMITTED)
    change.submitted_at = timezone.now()
    _move(
        change,
        states.SUBMITTED,
        actor=actor,
        verb="change.submitted",
        data={"content_sha256": change.content_sha256},
        fields=("submitted_at",),
    )
    runs = hooks.evaluation().start(change, actor=actor)
    _move(
        change,
        states.EVALUATING,
        actor=actor,
        verb="change.evaluation_started",
        data={"runs": [getattr(r, "pk", r) for r in runs]},
    )
    return change


@transaction.atomic
def change_request_record_verdict(
    *, change_id: int, content_sha256: str, passed: bool, reasons: list[str], actor=None
) -> ChangeRequest | None:
    """The evaluation engine's seam: evaluating -> awaiting_review or evaluation_failed.

    Idempotent: a verdict for content that is no longer current, or for a change that has
    already left ``evaluating``, is ignored (returns None). Writes ``change.evaluation_passed``
    or ``change.evaluation_failed`` with the reasons.
    """
    change = lock_change(change_id)
    if change.state != states.EVALUATING or change.content_sha256 != content_sha256:
        return None
    target = states.AWAITING_REVIEW if passed else states.EVALUATION_FAILED
    verb = "change.evaluation_passed" if passed else "change.evaluation_failed"
    _move(change, target, actor=actor, verb=verb, data={"reasons": list(reasons)})
    return change


def signature_meaning(change: ChangeRequest, decision: str) -> str:
    verbs = {
        "approve": "I approve deployment of",
        "request_changes": "I request changes to",
        "reject": "I reject",
    }
    return (
        f"{verbs[decision]} the change {change.reference} "
        f"with content hash {change.content_sha256}."
    )


@transaction.atomic
def review_submit(
    *,
    actor,
    change_request: ChangeRequest,
    decision: str,
    comment: str = "",
    password: str = "",
    expected_sha256: str | None = None,
    acknowledge_flagged_reasoning: bool = False,
) -> Review:
    """Record a signed review. Independence is checked, the password re-entered.

    ``acknowledge_flagged_reasoning`` (approvals only) is the reviewer's explicit
    acknowledgement of evaluation-aware reasoning the evaluation flagged: part of what they
    sign, and in the ``review.approved`` event.

    approve: writes ``review.approved``; with enough valid approvals, awaiting_review ->
    approved (``change.approved``) and an attestation is scheduled. request_changes/reject:
    one transition event carrying the review. A retrospective approval on a deployed
    emergency change clears its flag (``change.retrospective_completed``).
    """
    if decision not in {"approve", "request_changes", "reject"}:
        raise ValidationFailed(
            "decision: must be approve, request_changes or reject.",
            fields={"decision": ["Invalid choice."]},
        )
    change = lock_change(change_request.pk)
    check = permissions.check_independence(actor, change)
    if not check.ok:
        raise NotAllowed(" ".join(check.reasons), code="not_independent", reasons=check.reasons)
    if not throttle.check_signoff_password(actor, password):
        raise NotAllowed(
            "Signing requires your current password; the one given did not match.",
            code="reauthentication_failed",
        )
    if not permissions.is_open_for_review(change, decision=decision):
        raise Conflict(
            f"A change in state '{change.state_label}' is not open for review.",
            code="invalid_transition",
        )
    if expected_sha256 and expected_sha256 != change.content_sha256:
        raise Conflict(
            "The change was edited after you opened it: the content hash you reviewed "
            f"({expected_sha256[:12]}…) is not the current one ({change.content_sha256[:12]}…).",
            code="stale_content",
        )
    retrospective = change.state == states.DEPLOYED  # open for review: its retrospective
    if decision != "approve" and not (comment or "").strip():
        raise ValidationFailed("comment: say what must change or why it is rejected.")
    if acknowledge_flagged_reasoning and decision != "approve":
        raise ValidationFailed(
            "acknowledge_flagged_reasoning: only an approval acknowledges flagged reasoning.",
            fields={"acknowledge_flagged_reasoning": ["Only with decision approve."]},
        )
    meaning = signature_meaning(change, decision)
    if acknowledge_flagged_reasoning:
        meaning += (
            " I acknowledge that its evaluation flagged the model's reasoning as aware of "
            "being evaluated."
        )
    review = Review(
        change=change,
        reviewer=actor,
        decision=decision,
        comment=comment or "",
        content_sha256=change.content_sha256,
        evaluation_digest=hooks.evaluation().evaluation_digest(change),
        signature_meaning=meaning,
        independence=check.as_dict(),
        is_retrospective=retrospective,
        acknowledges_flagged_reasoning=bool(acknowledge_flagged_reasoning),
    )
    try:
        with transaction.atomic():
            review.save()
    except IntegrityError:
        raise Conflict(
            "You have already approved this exact content.", code="duplicate_approval"
        ) from None
    review_data = {
        "review": review.pk,
        "decision": decision,
        "content_sha256": change.content_sha256,
        "signature_meaning": review.signature_meaning,
    }
    if review.acknowledges_flagged_reasoning:
        review_data["acknowledges_flagged_reasoning"] = True
    if decision == "request_changes":
        _move(
            change,
            states.CHANGES_REQUESTED,
            actor=actor,
            verb="change.changes_requested",
            data=review_data,
        )
        return review
    if decision == "reject":
        _move(change, states.REJECTED, actor=actor, verb="change.rejected", data=review_data)
        return review
    audit.append(actor=actor, verb="review.approved", obj=change, data=review_data)
    approvals = len(valid_approvals(change))
    if retrospective:
        if approvals >= change.system.approvals_required:
            change.retrospective_pending = False
            change.save(update_fields=["retrospective_pending", "updated_at"])
            audit.append(actor=actor, verb="change.retrospective_completed", obj=change)
        return review
    if change.state == states.AWAITING_REVIEW and approvals >= required_approvals(change):
        _move(
            change,
            states.APPROVED,
            actor=actor,
            verb="change.approved",
            data={"approvals": approvals, "content_sha256": change.content_sha256},
        )
        hooks.attestation().issue(change, reason="approved")
    return review


@transaction.atomic
def change_request_confirm_emergency(*, actor, change_request: ChangeRequest) -> ChangeRequest:
    """An independent reviewer confirms that this exact content is an emergency.

    Only someone who could sign the change may confirm it (same independence rules, no admin
    bypass), so an author can never lower their own gate. The confirmation binds to the
    content hash: any edit voids it. Writes ``change.emergency_confirmed``.
    """
    change = lock_change(change_request.pk)
    if not change.is_emergency:
        raise Conflict("This change is not marked as an emergency.", code="not_emergency")
    if change.state in states.TERMINAL or change.state == states.DEPLOYED:
        raise Conflict(
            f"A change in state '{change.state_label}' can no longer be confirmed as an emergency.",
            code="invalid_transition",
        )
    check = permissions.check_independence(actor, change)
    if not check.ok:
        raise NotAllowed(
            "Only an independent reviewer may confirm an emergency. " + " ".join(check.reasons),
            code="not_independent",
            reasons=check.reasons,
        )
    if change.emergency_confirmed:
        return change
    change.emergency_confirmed_by = actor
    change.emergency_confirmed_sha256 = change.content_sha256
    change.save(
        update_fields=["emergency_confirmed_by", "emergency_confirmed_sha256", "updated_at"]
    )
    audit.append(
        actor=actor,
        verb="change.emergency_confirmed",
        obj=change,
        data={
            "content_sha256": change.content_sha256,
            "approvals_required": required_approvals(change),
            "independence": check.as_dict(),
        },
    )
    if change.state == states.AWAITING_REVIEW:
        approvals = len(valid_approvals(change))
        if approvals >= required_approvals(change):
            _move(
                change,
                states.APPROVED,
                actor=actor,
                verb="change.approved",
                data={"approvals": approvals, "content_sha256": change.content_sha256},
            )
            hooks.attestation().issue(change, reason="approved")
    return change


@transaction.atomic
def change_request_deploy(
    *,
    actor,
    change_request: ChangeRequest,
    environment: str | None = None,
    blackout_override: bool = False,
) -> Deployment:
    """Deploy to one environment of the system's path; approved -> deployed at the last one.

    The rules (unknown environment 400; out of order, stale base, blackout, gate closed 409)
    and the live-registry lock live in ``changes.env_services.deploy``.
    """
    from .env_services import deploy

    return deploy(
        actor=actor,
        change_id=change_request.pk,
        environment=environment,
        blackout_override=blackout_override,
    )


@transaction.atomic
def change_request_withdraw(*, actor, change_request: ChangeRequest, reason: str = "") -> None:
    """Any open state -> withdrawn. Writes ``change.withdrawn``; cancels runs in flight."""
    change = lock_change(change_request.pk)
    if not permissions.can_withdraw_change(actor, change):
        raise NotAllowed("Only the author (or an admin) withdraws a change.")
    _move(change, states.WITHDRAWN, actor=actor, verb="change.withdrawn", data={"reason": reason})
    hooks.evaluation().cancel(change, actor=actor)


@transaction.atomic
def change_request_close(*, actor, change_request: ChangeRequest) -> None:
    """deployed -> closed. Writes ``change.closed``.

    Later apps may hold the close (``hooks.register_close_part``: the monitoring window of a
    monitored change) and add evidence to the event; a close with evidence issues a
    post-deployment attestation quoting it (the event is hash-chained, so the attestation
    cites evidence that cannot move after the fact)."""
    change = lock_change(change_request.pk)
    if not permissions.is_author_or_admin(actor, change):
        raise NotAllowed("Only the author (or an admin) closes a change.")
    if change.retrospective_pending:
        raise Conflict(
            "This emergency change still needs its retrospective review before it can close.",
            code="retrospective_pending",
        )
    states.assert_transition(change.state, states.CLOSED)
    now = timezone.now()
    reasons, evidence = [], {}
    for part in hooks.close_parts():
        held, more = part(change, now)
        reasons += held
        evidence.update(more or {})
    if reasons:
        raise Conflict(
            f"{change.reference} may not close yet.", code="close_refused", reasons=reasons
        )
    data = {"post_deployment": evidence} if evidence else None
    _move(change, states.CLOSED, actor=actor, verb="change.closed", data=data)
    if evidence:
        hooks.attestation().issue(change, reason="closed")
