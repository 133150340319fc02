"""Standing: whether an attestation's facts still hold, separate from whether its file is valid.

A valid attestation proves what was true when it was issued. Its *standing* says whether that
is still the latest word on the change: ``current``, or ``superseded`` (by which attestation,
when, and why). Computed from the records on every read, never stored, because the causes
arrive after the row is frozen:

* a newer attestation of the same change was issued (e.g. the deployment after the approval);
* an approval it cites was voided (an edit changed the content; the review says why);
* the change's content moved on (edited since);
* the change left the state the attestation reports (withdrawn, sent back for changes,
  rejected, or back to draft).

``facts_problems`` is the narrower question the render service asks under a row lock before
issuing: do the facts this attestation reports still hold right now? (Issue 15: an
attestation whose approval was voided while it rendered is never issued as current.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from changes import states
from changes.models import AuditEvent, ChangeRequest, Review

from .models import Attestation

CURRENT = "current"
SUPERSEDED = "superseded"

# The states in which an attestation of each reason still describes the change.
HOLDING_STATES = {
    Attestation.APPROVED: {states.APPROVED, states.DEPLOYED, states.CLOSED},
    Attestation.DEPLOYED: {states.DEPLOYED, states.CLOSED},
    Attestation.CLOSED: {states.CLOSED},
}


@dataclass
class Cause:
    code: str
    why: str
    at: str | None = None


@dataclass
class Standing:
    standing: str
    superseded_by: dict | None = None
    superseded_at: str | None = None
    why: str = ""
    causes: list[Cause] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _cited_review_ids(facts) -> list[int]:
    signoffs = (facts or {}).get("signoffs") or []
    return [s["review_id"] for s in signoffs if isinstance(s, dict) and "review_id" in s]


def _state_moved_at(change: ChangeRequest):
    event = (
        AuditEvent.objects.filter(
            object_type=ChangeRequest._meta.label_lower,
            object_id=str(change.pk),
            data__to=change.state,
        )
        .order_by("-id")
        .only("created_at")
        .first()
    )
    return event.created_at if event is not None else change.updated_at


def _problems(
    attestation: Attestation, change: ChangeRequest, voided_reviews: list[Review]
) -> list[Cause]:
    causes: list[Cause] = []
    for review in voided_reviews:
        causes.append(
            Cause(
                "approval_voided",
                f"the approval by {review.reviewer.username} was voided"
                + (f" ({review.voided_reason})" if review.voided_reason else ""),
                _iso(review.voided_at),
            )
        )
    if change.content_sha256 != attestation.content_sha256:
        causes.append(
            Cause(
                "content_changed",
                "the change was edited: its content is no longer the attested content",
                _iso(change.updated_at),
            )
        )
    holding = HOLDING_STATES.get(attestation.reason, set())
    if change.state not in holding:
        label = states.LABELS.get(change.state, change.state)
        verb = "withdrawn" if change.state == states.WITHDRAWN else f"moved to '{label}'"
        causes.append(
            Cause("state_changed", f"the change was {verb}", _iso(_state_moved_at(change)))
        )
    return causes


def _voided(review_ids) -> list[Review]:
    return list(
        Review.objects.filter(pk__in=list(review_ids), voided_at__isnull=False)
        .select_related("reviewer")
        .order_by("voided_at", "pk")
    )


def facts_problems(attestation: Attestation, change: ChangeRequest) -> list[Cause]:
    """Why the facts ``attestation`` reports no longer hold for ``change`` (empty: they do).

    ``change`` should be freshly read (under a row lock when the answer decides an issue).
    """
    return _problems(attestation, change, _voided(_cited_review_ids(attestation.facts)))


def _compose(newer: Attestation | None, causes: list[Cause]) -> Standing:
    by = None
    if newer is not None:
        by = {"id": newer.pk, "version": newer.version, "reason": newer.reason}
        causes = [
            Cause(
                "newer_attestation",
                f"a newer attestation was issued (v{newer.version}, on {newer.reason})",
                _iso(newer.rendered_at or newer.created_at),
            ),
            *causes,
        ]
    if not causes:
        return Standing(CURRENT)
    first = min(causes, key=lambda c: c.at or "9999")
    return Standing(
        SUPERSEDED,
        superseded_by=by,
        superseded_at=first.at,
        why="; ".join(c.why for c in causes),
        causes=causes,
    )


def _newer(change_id: int, version: int) -> Attestation | None:
    return (
        Attestation.objects.filter(
            change_id=change_id, version__gt=version, status=Attestation.READY
        )
        .order_by("version")
        .only("pk", "version", "reason", "created_at", "rendered_at")
        .first()
    )


def standing_of(attestation: Attestation, change: ChangeRequest | None = None) -> Standing:
    """The standing of a ready attestation, from the records now."""
    change = change or ChangeRequest.objects.get(pk=attestation.change_id)
    return _compose(
        _newer(attestation.change_id, attestation.version), facts_problems(attestation, change)
    )


def standings(attestations) -> dict[int, Standing]:
    """Standing of each ready attestation in ``attestations`` (by id), for list pages.

    A fixed number of queries whatever the number of rows (plus one per row whose change left
    the reported state, to date that move): the lists defer ``facts``, so the cited review ids
    are read in one query, like the changes, the voided reviews and the ready versions.
    """
    rows = [a for a in attestations if a.status == Attestation.READY]
    if not rows:
        return {}
    change_ids = {a.change_id for a in rows}
    changes = {c.pk: c for c in ChangeRequest.objects.filter(pk__in=change_ids)}
    cited = {
        pk: _cited_review_ids(facts)
        for pk, facts in Attestation.objects.filter(pk__in=[a.pk for a in rows]).values_list(
            "pk", "facts"
        )
    }
    voided = {r.pk: r for r in _voided({i for ids in cited.values() for i in ids})}
    ready = {}
    for a in (
        Attestation.objects.filter(change_id__in=change_ids, status=Attestation.READY)
        .only("pk", "change_id", "version", "reason", "created_at", "rendered_at")
        .order_by("version")
    ):
        ready.setdefault(a.change_id, []).append(a)
    out = {}
    for row in rows:
        change = changes.get(row.change_id)
        if change is None:
            continue
        newer = next((a for a in ready.get(row.change_id, []) if a.version > row.version), None)
        reviews = [voided[i] for i in cited.get(row.pk, []) if i in voided]
        out[row.pk] = _compose(newer, _problems(row, change, reviews))
    return out
