"""Post-implementation review: the monitoring window a deployed, monitored change runs
through before it may close, and the live-evidence summary its close records.

The window is per system criticality (``MONITORING_CLOSE_DAYS``, e.g. low 1 day ... critical
14) from the moment the change reached its last environment, or
``MONITORING_CLOSE_REVIEWS`` human-reviewed live decisions of the change, whichever comes
first: a busy system earns its evidence sooner than the calendar says. An open incident on
the change also holds the close. When the change may close, the summary (live rate against
the evaluated band per environment, review-queue estimates, override rate, incidents,
probes) goes into the hash-chained ``change.closed`` event, and the attestations app quotes
it in the post-deployment attestation. An unmonitored change has no live evidence: it closes
as before, without a window or that attestation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from .models import Incident, Monitor, ProbeRun, ReviewItem


@dataclass(frozen=True)
class Window:
    criticality: str
    days: float
    started_at: datetime | None
    ends_at: datetime | None
    reviews_needed: int
    reviews_done: int
    open_incidents: list[str]
    now: datetime

    @property
    def elapsed(self) -> bool:
        return self.ends_at is not None and self.now >= self.ends_at

    @property
    def enough_reviews(self) -> bool:
        return self.reviews_done >= self.reviews_needed

    @property
    def over(self) -> bool:
        return self.started_at is not None and (self.elapsed or self.enough_reviews)

    def reasons(self) -> list[str]:
        out = []
        if self.started_at is None:
            out.append("The change has not reached its last environment: no window started.")
        elif not self.over:
            out.append(
                f"The monitoring window of this {self.criticality}-criticality change runs "
                f"until {self.ends_at:%Y-%m-%d %H:%M} UTC ({self.days:g} day(s) after deploy) "
                f"or until {self.reviews_needed} live decisions are human-reviewed "
                f"({self.reviews_done} so far)."
            )
        out += self.open_incidents
        return out


def window(change, now: datetime | None = None) -> Window | None:
    """The monitoring window of ``change`` (None: it has no monitor, so no window)."""
    if not Monitor.objects.filter(change=change).exists():
        return None
    now = now or timezone.now()
    level = change.system.criticality
    days = float(settings.MONITORING_CLOSE_DAYS.get(level, 7))
    started = change.deployed_at
    reviews = ReviewItem.objects.filter(decision__change=change, reviewed_at__isnull=False).count()
    incidents = [
        f"INC-{i.pk} is {i.get_state_display().lower()}: resolve it before closing."
        for i in Incident.objects.filter(change=change).exclude(state="resolved").order_by("id")
    ]
    return Window(
        criticality=level,
        days=days,
        started_at=started,
        ends_at=started + timedelta(days=days) if started else None,
        reviews_needed=int(settings.MONITORING_CLOSE_REVIEWS.get(level, 100)),
        reviews_done=reviews,
        open_incidents=incidents,
        now=now,
    )


def _rate(value) -> float | None:
    return None if value is None else round(float(value), 6)


def summary(change, win: Window) -> dict:
    """The live evidence of ``change`` at its close (JSON, rounded: it is quoted verbatim)."""
    from . import discrepancy, judging, review

    live = []
    for row in discrepancy.assess(change):
        ref = row["reference"] or {}
        live.append(
            {
                "environment": row["environment"],
                "decisions": row["n"],
                "new": row["new"],
                "legacy": row["legacy"],
                "live_rate": _rate(row["rate"]),
                "live_cs": [_rate(x) for x in row["cs"]],
                "alpha": row["alpha"],
                "evaluated_condition": ref.get("condition"),
                "evaluated_rate": _rate(ref.get("rate")),
                "evaluated_band": [_rate(ref.get("lower")), _rate(ref.get("upper"))],
                "below_evaluated": row["alarm"],
            }
        )
    est = review.estimates(change.system_id)

    def ht(name):
        r = est[name]
        return {
            "estimate": _rate(r.get("estimate")),
            "bounded": _rate(r.get("bounded")),
            "ci": [_rate(x) for x in (r.get("ci") or [None, None])],
            "n": r.get("n"),
        }

    incidents = [
        {"id": i.pk, "kind": i.kind, "state": i.state, "opened_at": i.opened_at.isoformat(),
         "summary": i.summary[:300]}
        for i in Incident.objects.filter(change=change).order_by("id")
    ]  # fmt: skip
    probes = ProbeRun.objects.filter(change=change).aggregate(n=Sum("n"), new=Sum("new"))
    return {
        "window": {
            "criticality": win.criticality,
            "days": win.days,
            "started_at": win.started_at.isoformat() if win.started_at else None,
            "ends_at": win.ends_at.isoformat() if win.ends_at else None,
            "closed_at": win.now.isoformat(),
            "reviews_needed": win.reviews_needed,
            "reviews_done": win.reviews_done,
            "ended_by": "time" if win.elapsed else "reviews",
        },
        "live": live,
        "review": {
            "population": est["population"],
            "sampled": est["sampled"],
            "reviewed": est["reviewed"],
            "compliance": ht("compliance"),
            "override_rate": ht("override_rate"),
            "grader_agreement": ht("grader_agreement"),
        },
        "incidents": incidents,
        "probes": {"n": probes["n"] or 0, "new": probes["new"] or 0},
        "judge": judging.summary(change),
    }


def close_part(change, now) -> tuple[list[str], dict | None]:
    """``changes.hooks`` close part: hold the close until the window is over; then the
    evidence for the ``change.closed`` event."""
    win = window(change, now)
    if win is None:
        return [], None
    reasons = win.reasons()
    if reasons:
        return reasons, None
    return [], {"monitoring": summary(change, win)}
