"""Judge graders on live traffic, at the monitor's sampling rate.

A judge call per live decision would cost a model call each, so the monitor declares a
``judge`` (a registered judge model by name, a rate, and suite-style graders that may use
``judge`` kinds) and only that fraction of decisions is judged. The draw is a hash of the
decision id (deterministic: a re-run judges the same decisions, never twice: one
:class:`JudgeVerdict` per decision). The judge is reached exactly as an evaluation's is:
``evaluations.registry`` resolves the registered model (host guard, granted secrets) and the
suite grader code asks it and tallies the votes; a vote without a strict majority (unparsable
votes count against both answers) is an error, counted, not guessed. Judging runs after the
grading transaction commits, on the monitoring queue, so the cheap online grading never waits
on a model.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count

from .models import Decision, JudgeVerdict, Monitor

logger = logging.getLogger(__name__)
JUDGE_KEYS = {"model", "rate", "graders"}


def judge_errors(spec) -> list[str]:
    """What is wrong with a monitor's judge declaration, in words (empty: nothing)."""
    from evaluations import graders
    from evaluations.models import JudgeModel

    if spec in (None, {}):
        return []
    if not isinstance(spec, dict) or set(spec) != JUDGE_KEYS:
        return ["judge: a mapping with exactly the keys model, rate and graders"]
    problems = []
    rate = spec["rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        problems.append("judge.rate: a fraction of live decisions, above 0 and at most 1")
    name = spec["model"]
    if not isinstance(name, str) or not JudgeModel.objects.filter(name=name, enabled=True).exists():
        problems.append(f"judge.model: no enabled judge model named {str(name)[:80]!r}")
    sides = spec["graders"]
    if not isinstance(sides, dict) or set(sides) != {"new", "legacy"}:
        return [*problems, "judge.graders: a mapping with exactly the keys new and legacy"]
    for side in ("new", "legacy"):
        for path, message in graders.grader_errors(sides[side]):
            where = ".".join(str(p) for p in (side, *path))
            problems.append(f"judge.graders.{where}: {message}")
    return problems


def normalise(spec) -> dict:
    from evaluations import graders

    if not spec:
        return {}
    return {
        "model": spec["model"],
        "rate": float(spec["rate"]),
        "graders": {s: graders.normalise_side(spec["graders"][s]) for s in ("new", "legacy")},
    }


def sampled(decision_id: int, rate: float) -> bool:
    """Whether decision ``decision_id`` is judged at ``rate`` (a hash, not a coin: stable)."""
    digest = hashlib.sha256(f"judge:{decision_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def after_grading(graded, monitors: dict) -> None:
    """Called in the grading transaction: send the sampled decisions to the judge on commit."""
    picked: dict[int, list[int]] = {}
    for row in graded:
        judge = monitors[row.change_id].judge
        if judge and not row.is_probe and sampled(row.pk, judge["rate"]):
            picked.setdefault(row.change_id, []).append(row.pk)
    if not picked:
        return
    from . import tasks

    for change_id, ids in picked.items():
        transaction.on_commit(lambda c=change_id, i=ids: tasks.enqueue_judging(c, i), robust=True)


def _judge_target(monitor):
    from evaluations import registry
    from evaluations.targets import build_target

    found = registry.judge_for_suite(
        {"judge": monitor.judge["model"]}, suite_name=f"monitor of {monitor.change.reference}"
    )
    config, secrets = found
    return build_target(
        config,
        allowed_hosts=list(settings.EVAL_ALLOWED_HOSTS),
        max_response_bytes=settings.EVAL_MAX_RESPONSE_BYTES,
        secrets=secrets,
    )


def judge_decisions(change_id: int, decision_ids: list[int]) -> int:
    """Judge those of the given decisions of one change that are in the sample and not yet
    judged; returns how many verdicts this call stored."""
    from evaluations import graders

    monitor = Monitor.objects.select_related("change").filter(change_id=change_id).first()
    if monitor is None or not monitor.judge:
        return 0
    rate = monitor.judge["rate"]
    wanted = [i for i in decision_ids if sampled(i, rate)]  # only ever the sample
    done = set(
        JudgeVerdict.objects.filter(decision_id__in=wanted).values_list("decision_id", flat=True)
    )
    todo = list(
        Decision.objects.filter(
            pk__in=[i for i in wanted if i not in done], change_id=change_id, is_probe=False
        ).values_list("pk", "environment", "output_text")
    )
    if not todo:
        return 0
    from .selectors import labels_for

    grades = labels_for([pk for pk, _env, _output in todo])  # the online grader's, if graded
    try:
        target = _judge_target(monitor)
        unavailable = ""
    except Exception as exc:  # noqa: BLE001 - an unusable judge makes errors that say why
        target, unavailable = None, f"judge unavailable: {exc}"[:300]
    stored = 0
    for pk, environment, output in todo:
        grader_label = grades.get(pk, ("", ""))[0]
        label, error = "error", unavailable
        if target is not None:
            try:
                label, _evidence = graders.grade(
                    monitor.judge["graders"], output, judge=target, seed=pk
                )
            except Exception as exc:  # noqa: BLE001 - no majority, a failed call: an error
                label, error = "error", f"{type(exc).__name__}: {exc}"[:300]
        try:
            with transaction.atomic():
                JudgeVerdict.objects.create(
                    change_id=change_id, decision_id=pk, environment=environment, label=label,
                    grader_label=grader_label or "", error=error,
                )  # fmt: skip
            stored += 1
        except IntegrityError:  # judged by a concurrent task meanwhile
            continue
    return stored


def summary(change) -> dict:
    """Judge counts of ``change``'s live decisions, and how often the judge agrees with the
    online grader on the decisions both labelled (errors excluded)."""
    counts = dict(
        JudgeVerdict.objects.filter(change=change)
        .values_list("label")
        .annotate(n=Count("id"))
        .values_list("label", "n")
    )
    both = (
        JudgeVerdict.objects.filter(change=change).exclude(label="error").exclude(grader_label="")
    )
    total = both.count()
    agree = sum(1 for a, b in both.values_list("label", "grader_label") if a == b)
    return {
        "n": sum(counts.values()),
        "new": counts.get("new", 0),
        "legacy": counts.get("legacy", 0),
        "other": counts.get("other", 0),
        "errors": counts.get("error", 0),
        "agreement_with_grader": agree / total if total else None,
    }
