"""Sampled human review of live decisions, with estimates that stay unbiased.

Sampling is Poisson (each graded decision is drawn independently) and stratified by
environment x grader label: the inclusion probability of a decision is the system's
fraction for its grader label (e.g. oversample ``legacy``), stored on the review item. The
draw is a keyed hash of the decision id, so it is reproducible and a re-graded batch draws
the same decisions. Estimates weight each reviewed item by ``1 / probability``
(Horvitz-Thompson); items sampled but not yet reviewed are treated as a second phase of
sampling within their stratum (``probability x reviewed / sampled``), so a half-worked
queue does not bias the estimate as long as reviewers do not pick items by content.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from changes import audit, permissions
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import stats
from .models import ReviewConfig, ReviewItem, Rollup

VERDICTS = {v for v, _ in ReviewItem.VERDICTS}
HUMAN_LABEL = {"agree_new": "new", "follows_legacy": "legacy"}


def config_for(system_id: int) -> ReviewConfig:
    return ReviewConfig.objects.filter(system_id=system_id).first() or ReviewConfig(
        system_id=system_id, fraction=settings.MONITORING_REVIEW_FRACTION
    )


def probability_for(config: ReviewConfig, label: str) -> float:
    value = (config.label_fractions or {}).get(label or "error", config.fraction)
    return min(max(float(value), 0.0), 1.0)


@functools.lru_cache(maxsize=4)
def _keyed(secret: str):
    """BLAKE2b keyed with (a digest of) the secret: a keyed PRF like HMAC-SHA256, in one
    pass instead of two (the HMAC showed in grading profiles). BLAKE2b keys are at most 64
    bytes, so the secret is hashed to 64 first."""
    key = hashlib.sha512(b"pcm-review-sample:" + secret.encode()).digest()
    return hashlib.blake2b(key=key, digest_size=8)


def uniform(decision_id: int, keyed=None) -> float:
    """A reproducible U(0, 1) per decision, unpredictable without the secret key. (The keyed
    state is prepared once and copied; ``keyed`` is ``_keyed(settings.SECRET_KEY)`` looked
    up once by a caller in a loop.)"""
    mac = (keyed or _keyed(settings.SECRET_KEY)).copy()
    mac.update(b"review:%d" % decision_id)
    return int.from_bytes(mac.digest(), "big") / 2**64


def sample(decisions, configs: dict | None = None) -> int:
    """Draw review items among freshly graded decisions (called inside the grading
    transaction, so a rolled-back batch draws nothing). Each item keeps the grader's label:
    the estimates read it there, not from the grade log (pruned with the decisions).
    ``configs`` caches the systems' review configurations across a grader's batches."""
    configs = {} if configs is None else configs
    # Per (system, label), not per decision: a batch has a few strata and ~1,000 decisions.
    # The draw compares the hash as an integer with pi x 2^64 (the same test as
    # ``uniform(id) < pi``, without a float per decision).
    thresholds: dict[tuple[int, str], tuple[float, int]] = {}
    copy = _keyed(settings.SECRET_KEY).copy
    from_bytes = int.from_bytes
    items = []
    for d in decisions:
        if d.is_probe or d.change_id is None:
            continue
        key = (d.system_id, d.label)
        found = thresholds.get(key)
        if found is None:
            config = configs.get(d.system_id)
            if config is None:
                config = configs[d.system_id] = config_for(d.system_id)
            pi = probability_for(config, d.label)
            found = thresholds[key] = (pi, _threshold(pi))
        pi, limit = found
        if not limit:
            continue
        mac = copy()
        mac.update(b"review:%d" % d.pk)
        if from_bytes(mac.digest(), "big") < limit:
            items.append((d.pk, d.system_id, f"{d.environment}|{d.label or 'error'}", pi, d.label))
    if items:
        _insert_items(items)
    return len(items)


#: The sample of a batch in one statement of binary arrays (``bulk_create`` of ~40 model
#: instances per batch cost more than drawing the sample of 2,000 decisions).
_ITEMS_SQL = """
INSERT INTO monitoring_reviewitem
       (decision_id, system_id, stratum, probability, label, verdict, comment, created_at)
SELECT d, s, st, p, lab, '', '', %b
  FROM unnest(%b::bigint[], %b::bigint[], %b::varchar[], %b::float8[], %b::varchar[])
       AS t(d, s, st, p, lab)
ON CONFLICT DO NOTHING
"""


def _insert_items(items: list[tuple]) -> None:
    """Store drawn items ``(decision_id, system_id, stratum, probability, label)``; one
    already drawn (a re-run of the same batch) is left as it is."""
    if connection.vendor != "postgresql":
        ReviewItem.objects.bulk_create(
            [
                ReviewItem(decision_id=d, system_id=s, stratum=st, probability=p, label=lab)
                for d, s, st, p, lab in items
            ],
            ignore_conflicts=True,
        )
        return
    import psycopg

    columns = list(zip(*items, strict=True))
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_ITEMS_SQL, [timezone.now(), *(list(c) for c in columns)])


def _threshold(pi: float) -> int:
    """The smallest integer t with ``h / 2**64 < pi`` exactly when ``h < t`` (h a 64-bit
    hash), so the integer test draws exactly the decisions ``uniform(id) < pi`` draws."""
    if pi <= 0:
        return 0
    t = min(int(pi * 2**64), 2**64)
    while t > 0 and (t - 1) / 2**64 >= pi:
        t -= 1
    while t < 2**64 and t / 2**64 < pi:
        t += 1
    return t


@transaction.atomic
def review_submit(*, actor, item: ReviewItem, verdict: str, comment: str = "") -> ReviewItem:
    """A reviewer's verdict on one sampled decision (the sign-off independence rules)."""
    if verdict not in VERDICTS:
        raise ValidationFailed("verdict: agree_new, follows_legacy or override.")
    comment = (comment or "").strip()
    if "\x00" in comment or len(comment) > 5000:
        raise ValidationFailed("comment: at most 5000 characters, no NUL.")
    if verdict == "override" and not comment:
        raise ValidationFailed("comment: say what you would have decided instead.")
    item = (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("decision__change__system")
        .get(pk=item.pk)
    )
    change = item.decision.change
    check = permissions.check_independence(actor, change)
    if not check.ok:
        raise NotAllowed(" ".join(check.reasons) or "You are not independent of this change.")
    if item.reviewed_at is not None:
        raise Conflict("This decision was already reviewed.", code="duplicate")
    item.verdict, item.comment, item.reviewer = verdict, comment, actor
    item.reviewed_at = timezone.now()
    item.save(update_fields=["verdict", "comment", "reviewer", "reviewed_at"])
    audit.append(
        actor=actor,
        verb="monitoring.decision_reviewed",
        obj=item.decision,
        data={"verdict": verdict, "change": change.reference, "stratum": item.stratum},
    )
    check_override_rate(item.system_id)
    return item


def estimate(rows, population: int, confidence: float = 0.95) -> dict:
    """Estimates from review items: ``rows`` are dicts with ``stratum``, ``probability``,
    ``verdict`` ('' when not reviewed yet) and ``label`` (the grader's)."""
    sampled: dict[str, int] = defaultdict(int)
    reviewed: dict[str, int] = defaultdict(int)
    for r in rows:
        sampled[r["stratum"]] += 1
        reviewed[r["stratum"]] += bool(r["verdict"])
    weighted = []
    for r in rows:
        if r["verdict"]:
            share = reviewed[r["stratum"]] / sampled[r["stratum"]]
            weighted.append((r, r["probability"] * share))

    def ht(predicate) -> dict:
        return stats.ht_rate(
            ((1.0 if predicate(r) else 0.0, pi) for r, pi in weighted), population, confidence
        )

    agree = sum(HUMAN_LABEL.get(r["verdict"]) == r["label"] for r, _ in weighted)
    return {
        "population": population,
        "sampled": len(rows),
        "reviewed": len(weighted),
        "override_rate": ht(lambda r: r["verdict"] == "override"),
        "compliance": ht(lambda r: r["verdict"] == "agree_new"),
        "grader_agreement": ht(lambda r: HUMAN_LABEL.get(r["verdict"]) == r["label"]),
        "grader_agreement_unweighted": (agree / len(weighted)) if weighted else None,
    }


def estimates(system_id: int) -> dict:
    # The sampling population (graded, not probes, under a live change) from the rollups:
    # constant time however many decisions there are, and unchanged when retention deletes
    # the raw rows the review items were drawn from.
    totals = Rollup.objects.filter(change__system_id=system_id).aggregate(
        n=Sum("n"), errors=Sum("errors")
    )
    population = (totals["n"] or 0) + (totals["errors"] or 0)
    rows = [
        {"stratum": s, "probability": p, "verdict": v, "label": lab}
        for s, p, v, lab in ReviewItem.objects.filter(system_id=system_id).values_list(
            "stratum", "probability", "verdict", "label"
        )
    ]
    return estimate(rows, population)


def check_override_rate(system_id: int):
    """Open an incident when the override rate's interval lies above the system's bound."""
    from .services import incident_open

    config = config_for(system_id)
    result = estimates(system_id)["override_rate"]
    low = result["ci"][0]
    if (
        low is None
        or result["n"] < settings.MONITORING_MIN_REVIEWS
        or low <= config.max_override_rate
    ):
        return None
    from changes.models import AISystem

    system = AISystem.objects.get(pk=system_id)
    return incident_open(
        system=system,
        change=None,
        kind="override_rate",
        key=f"override:{system_id}",
        environment="",
        summary=(
            f"Reviewers override {result['estimate']:.1%} of {system.name}'s live decisions "
            f"(95% interval from {low:.1%}), above the bound of {config.max_override_rate:.0%}."
        ),
        details=result,
    )
