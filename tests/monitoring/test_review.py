"""Sampled human review: stored inclusion probabilities, independence, unbiased estimates."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import Conflict, NotAllowed, ValidationFailed
from monitoring import grading, review
from monitoring.models import Incident, ReviewConfig, ReviewItem
from monitoring.selectors import labels_for

from .conftest import store

FRACTIONS = {"new": 0.05, "legacy": 0.6, "other": 0.25}


def test_horvitz_thompson_is_unbiased_with_unequal_sampling_rates():
    """Known truth: 3000 decisions whose override and compliance rates differ by grader
    label; labels are sampled at 5%, 60% and 25%. Over 1000 seeded replications the mean
    estimate equals the truth (a plain sample mean would be far off). The normal 95%
    interval covers it in about 90% of them: a rare outcome in the 5% stratum makes the
    estimator skewed (docs/MONITORING.md says so)."""
    rng = np.random.default_rng(2026)
    n = 3000
    labels = rng.choice(["new", "legacy", "other"], size=n, p=[0.8, 0.12, 0.08])
    p_override = np.select([labels == "new", labels == "legacy"], [0.02, 0.7], 0.3)
    overrides = rng.random(n) < p_override
    verdicts = np.where(
        overrides, "override", np.where(labels == "legacy", "follows_legacy", "agree_new")
    )
    truth_override = overrides.mean()
    truth_compliance = (verdicts == "agree_new").mean()
    pi = np.array([FRACTIONS[lab] for lab in labels])
    est_o, est_c, naive, covered = [], [], [], 0
    for _ in range(1000):
        drawn = rng.random(n) < pi
        rows = [
            {"stratum": labels[i], "probability": pi[i], "verdict": verdicts[i], "label": labels[i]}
            for i in np.flatnonzero(drawn)
        ]
        result = review.estimate(rows, n)
        est_o.append(result["override_rate"]["estimate"])
        est_c.append(result["compliance"]["estimate"])
        naive.append(overrides[drawn].mean())
        lo, hi = result["override_rate"]["ci"]
        covered += lo <= truth_override <= hi
    assert abs(np.mean(est_o) - truth_override) < 0.004
    assert abs(np.mean(est_c) - truth_compliance) < 0.005
    assert abs(np.mean(naive) - truth_override) > 0.05  # why the weights matter
    assert 0.87 <= covered / 1000 <= 0.98


def test_partially_worked_queue_stays_unbiased():
    """Reviewers have done a random half of each stratum: the within-stratum reweighting
    keeps the estimate centred."""
    rng = np.random.default_rng(7)
    n = 2000
    labels = rng.choice(["new", "legacy"], size=n, p=[0.85, 0.15])
    overrides = rng.random(n) < np.where(labels == "new", 0.05, 0.5)
    truth = overrides.mean()
    pi = np.where(labels == "new", 0.1, 0.8)
    estimates = []
    for _ in range(1000):
        drawn = np.flatnonzero(rng.random(n) < pi)
        rows = [
            {
                "stratum": labels[i],
                "probability": pi[i],
                "verdict": ("override" if overrides[i] else "agree_new")
                if rng.random() < 0.5
                else "",
                "label": labels[i],
            }
            for i in drawn
        ]
        estimates.append(review.estimate(rows, n)["override_rate"]["estimate"])
    assert abs(np.mean(estimates) - truth) < 0.004


@pytest.mark.django_db
def test_grading_samples_by_stratum_and_stores_the_probability(monitor, deployed):
    ReviewConfig.objects.create(
        system=deployed.system, fraction=0.0, label_fractions={"legacy": 1.0}
    )
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 20 + ["I approve."] * 5)
    grading.grade_pending()
    items = list(ReviewItem.objects.select_related("decision"))
    assert len(items) == 5
    assert {i.label for i in items} == {"legacy"}  # the grader's label, kept on the item
    graded = labels_for([i.decision_id for i in items])
    assert {pk: label for pk, (label, _) in graded.items()} == {
        i.decision_id: "legacy" for i in items
    }
    assert {(i.stratum, i.probability) for i in items} == {("production|legacy", 1.0)}
    grading.grade_pending()  # nothing is drawn twice
    assert ReviewItem.objects.count() == 5


@pytest.fixture
def queue(monitor, deployed):
    ReviewConfig.objects.create(system=deployed.system, fraction=1.0, max_override_rate=0.1)
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 12)
    grading.grade_pending()
    return list(ReviewItem.objects.all())


@pytest.mark.django_db
def test_reviewer_independence_and_one_verdict(queue, engineer, reviewer, reviewer2):
    item = queue[0]
    with pytest.raises(NotAllowed):  # the author
        review.review_submit(actor=engineer, item=item, verdict="agree_new")
    with pytest.raises(ValidationFailed):
        review.review_submit(actor=reviewer, item=item, verdict="override")  # no comment
    review.review_submit(actor=reviewer, item=item, verdict="agree_new")
    with pytest.raises(Conflict):
        review.review_submit(actor=reviewer2, item=item, verdict="agree_new")


@pytest.mark.django_db
def test_high_override_rate_opens_an_incident(queue, reviewer, settings, deployed):
    settings.MONITORING_MIN_REVIEWS = 10
    for item in queue[:11]:
        review.review_submit(actor=reviewer, item=item, verdict="override", comment="deny it")
    incident = Incident.objects.get(kind="override_rate")
    assert incident.system_id == deployed.system_id
    result = review.estimates(deployed.system_id)
    # 11 of the 12 sampled are reviewed: the twelfth counts as missing at random.
    assert result["reviewed"] == 11 and result["override_rate"]["estimate"] == pytest.approx(1.0)
    assert result["grader_agreement_unweighted"] == 0


@pytest.mark.django_db
def test_review_config_is_validated(deployed):
    from django.core.exceptions import ValidationError

    for bad in ({"fraction": 1.5}, {"label_fractions": {"legacy": 2}},
                {"label_fractions": {"nope": 0.1}}, {"label_fractions": [0.1]},
                {"max_override_rate": -0.1}):  # fmt: skip
        with pytest.raises(ValidationError):
            ReviewConfig(system=deployed.system, **bad).full_clean()
    ReviewConfig(system=deployed.system, label_fractions={"legacy": 0.5}).full_clean()


def test_the_review_population_comes_from_rollups_and_counts_grader_errors(
    deployed, monitor, monkeypatch
):
    """Graded decisions, errors included, probes excluded; and it outlives raw retention."""
    from monitoring.models import Decision, Rollup

    store(deployed, ["NEEDS_SECOND_APPROVER"] * 6 + ["boom"] * 2)
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 3, probe=True)
    real = grading.graders.labeller

    def failing(spec):
        label = real(spec)

        def labeller(text):
            if text == "boom":
                raise grading.graders.GraderError("pattern failed")
            return label(text)

        return labeller

    monkeypatch.setattr(grading.graders, "labeller", failing)
    grading.grade_pending()
    assert Rollup.objects.get().errors == 2
    assert review.estimates(deployed.system_id)["population"] == 8
    Decision.objects.filter(review__isnull=True).delete()  # retention of the raw rows
    assert review.estimates(deployed.system_id)["population"] == 8


def test_an_estimate_above_one_is_shown_capped_with_the_unbiased_value_beside_it():
    from django.template.loader import render_to_string

    from monitoring import stats

    # 5 reviewed of 300 at 1%: each "yes" weighs 100, so 4 of them estimate 400 / 300.
    result = stats.ht_rate([(1.0, 0.01)] * 4 + [(0.0, 0.01)], population=300)
    assert result["estimate"] == pytest.approx(4 / 3)  # unbiased, not bounded
    assert result["bounded"] == 1.0
    assert stats.ht_rate([(0.0, 0.5)], population=10)["bounded"] == 0.0
    assert stats.ht_rate([], population=0)["bounded"] is None
    page = render_to_string("monitoring/_ht_estimate.html", {"est": result})
    assert page.startswith("1.000") and "unbiased estimate 1.333" in page
    quoted = {"estimate": 1.3333, "bounded": 1.0, "ci": [0.03, 1.0]}
    pdf_text = render_to_string("attestations/_ht_estimate.html", {"est": quoted})
    assert pdf_text.startswith("1.0 (capped") and "unbiased estimate 1.3333" in pdf_text
    # An event recorded before "bounded" existed: the estimate as it was recorded.
    old = render_to_string("attestations/_ht_estimate.html", {"est": {"estimate": 0.91}})
    assert old.strip() == "0.91"
    within = render_to_string("monitoring/_ht_estimate.html", {"est": stats.ht_rate(
        [(1.0, 0.5), (0.0, 0.5)], population=4)})  # fmt: skip
    assert within.strip() == "0.500"
