"""Reads about attestations, always scoped to what the acting user may see.

Lists never load the PDF or envelope bytes; downloads load exactly one row's bytes.
"""

from __future__ import annotations

from datetime import date, datetime, time

from django.db.models import Q, QuerySet
from django.utils import timezone

from changes import selectors

from .models import Attestation

LIST_DEFER = ("pdf", "envelope", "facts", "statement")


def visible_attestations(user) -> QuerySet[Attestation]:
    """Attestations of the changes ``user`` may read (auditors and admins: all of them)."""
    changes = selectors.visible_changes(user)
    return (
        Attestation.objects.filter(change__in=changes.values("pk"))
        .select_related("change", "change__system")
        .defer(*LIST_DEFER)
        .order_by("-created_at", "-id")
    )


def _day_bound(value, *, end: bool):
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        moment = datetime.combine(value, time.max if end else time.min)
        return timezone.make_aware(moment, timezone.get_current_timezone())
    return None


MAX_ID = 2**63 - 1


def _in_range(value) -> bool:
    # An id no database row can have; SQLite raises OverflowError on it instead of matching.
    try:
        return 0 < int(value) <= MAX_ID
    except (TypeError, ValueError):
        return False


def filter_attestations(
    qs: QuerySet[Attestation],
    *,
    system=None,
    change=None,
    reason: str | None = None,
    status: str | None = None,
    since=None,
    until=None,
) -> QuerySet[Attestation]:
    """Filters of the auditor list. ``system`` is an id or a name; dates are inclusive days."""
    if system not in (None, ""):
        system = str(system)
        if system.isdigit():
            qs = qs.filter(change__system_id=int(system)) if _in_range(system) else qs.none()
        else:
            qs = qs.filter(change__system__name=system)
    if change not in (None, ""):
        qs = qs.filter(change_id=int(change)) if _in_range(change) else qs.none()
    if reason:
        qs = qs.filter(reason=reason)
    if status:
        qs = qs.filter(status=status)
    start = _day_bound(since, end=False)
    if start is not None:
        qs = qs.filter(created_at__gte=start)
    stop = _day_bound(until, end=True)
    if stop is not None:
        qs = qs.filter(created_at__lte=stop)
    return qs


def change_attestations(change) -> QuerySet[Attestation]:
    """Every version of one change's attestations, newest first (no bytes)."""
    return (
        Attestation.objects.filter(change=change)
        .select_related("change", "change__system")
        .defer(*LIST_DEFER)
        .order_by("-version")
    )


# Failed renders the periodic reaper sets back to pending: they are still on their way.
MAX_ATTEMPTS = 3
RETRYABLE = Q(status=Attestation.FAILED, attempts__lt=MAX_ATTEMPTS, facts__isnull=False) & ~Q(
    attempts=0
)
ON_ITS_WAY = Q(status__in=Attestation.IN_FLIGHT) | RETRYABLE


def newest_on_its_way(change) -> Attestation | None:
    """The newest attestation of ``change`` that will be ready without anyone acting: pending,
    rendering, or failed with attempts left (``attestations.requeue_stalled`` retries it)."""
    return (
        Attestation.objects.filter(change=change)
        .filter(ON_ITS_WAY)
        .defer(*LIST_DEFER)
        .order_by("-version")
        .first()
    )


def is_on_its_way(attestation: Attestation) -> bool:
    """Whether this row will be ready without anyone acting (see :data:`ON_ITS_WAY`)."""
    return Attestation.objects.filter(pk=attestation.pk).filter(ON_ITS_WAY).exists()


def newest_ready(change) -> Attestation | None:
    return (
        Attestation.objects.filter(change=change, status=Attestation.READY)
        .order_by("-version")
        .first()
    )


def attestation_for(user, pk: int) -> Attestation:
    """One attestation of a visible change, or ``Attestation.DoesNotExist`` (-> 404)."""
    return visible_attestations(user).get(pk=pk)


def download_bytes(attestation: Attestation, kind: str) -> bytes:
    """The stored PDF or envelope bytes of one row (loaded on demand)."""
    field = {"pdf": "pdf", "envelope": "envelope"}[kind]
    value = Attestation.objects.filter(pk=attestation.pk).values_list(field, flat=True).first()
    return bytes(value or b"")
