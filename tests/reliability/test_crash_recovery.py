"""Crash recovery at scale: 25 evaluation runs while a worker is SIGKILLed every few seconds.

Two real Celery workers (prefork, 2 children each) share a private queue on the configured
broker and the test database. For 40 s a chaos loop SIGKILLs the whole process group of the
busiest worker every 2-4 s (no cleanup, no ack: its leases and the messages it took are
simply lost) and starts a replacement, while this process runs the reaper every 2 s, as beat
would. A kill waits until some worker holds a lease, so on a slow machine, where a worker
takes many seconds to boot, the real rate is bounded by the boot time; the chaos goes on past
its 40 s until at least one kill has landed on work in flight. After the chaos the last two
workers finish the work.

Every wait is for an event, with a deadline generous enough for a loaded 2-core machine: the
first lease (a cold worker boot), and then progress: the test fails when no batch has finished
for ``STALL_SECONDS`` (not when a fixed wall-clock budget runs out: on a loaded machine each
replacement takes many seconds to boot, and the drain takes as long as it takes). A hard cap
(``CAP_SECONDS``) still bounds a run that creeps.

Then every run must have completed with exactly its samples, none twice, each change must
have reached review, nothing may be recorded twice in the audit log, and the chain must
verify.

The test fails if the chaos never bit: at least one kill must orphan a leased batch, and
that batch must have been claimed again. A one-line summary is printed (``-s`` shows it).

Run with ``pytest -m worker tests/reliability``.
"""

from __future__ import annotations

import random
import time

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from changes import audit, states
from changes import services as change_services
from changes.models import AuditEvent, ChangeRequest
from evaluations import reaper, suite_services
from evaluations.models import Batch, EvaluationRun, Sample
from tests.evaluations.conftest import suite_text
from tests.evaluations.workers import Worker, wait_for
from tests.factories import SystemFactory, make_change

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RUNS = 25
#: 3 scenarios x 2 conditions x 2 cues x 8 epochs (the fewest with which a consistent agent
#: passes the medium gate); batches of 10 (the worker_queue fixture).
SAMPLES_PER_RUN = 96
#: Each reference call sleeps this long, two at a time: a batch of 10 takes ~0.5 s, so the
#: 250 batches keep four worker processes busy for longer than the chaos lasts.
TARGET = {"kind": "reference", "agent": "compliant", "latency_ms": 100, "max_concurrency": 2}
CHAOS_SECONDS = 40.0
#: A worker must lease its first batch within this long of the submissions (a cold boot of
#: Celery + Django, two at once, on a loaded machine).
BOOT_SECONDS = 300.0
KILL_EVERY = (2.0, 4.0)
REAP_EVERY = 2.0
#: Short leases so a dead worker's batches are re-sent within seconds (the lease keeper
#: renews every third of it while a batch runs). Not shorter: a live worker starved of CPU for
#: a whole lease on a loaded machine would lose its batch, which proves nothing about crashes.
LEASE_SECONDS = 10
#: Fail when no batch has finished for this long: longer than a replacement worker's boot plus
#: a lease on a loaded machine (with both workers replaced at once nothing finishes meanwhile).
STALL_SECONDS = 240.0
#: Everything after the changes are filed, whatever the progress: a bound, not an expectation.
CAP_SECONDS = 1200.0


def test_fifty_runs_complete_exactly_while_workers_are_sigkilled(start_worker, engineer, team_a):
    # Given 50 changes submitted against the reference agent, and two workers.
    started = time.monotonic()
    suite = suite_services.suite_create(
        actor=engineer,
        text=suite_text(name="crash-recovery", epochs=8, scenarios=3),
        fmt="json",
    )
    assert suite.sample_count == SAMPLES_PER_RUN

    def new_worker() -> Worker:
        return start_worker(EVAL_LEASE_SECONDS=LEASE_SECONDS)

    workers = [new_worker(), new_worker()]
    kills: list[int] = []  # per kill: the batches the dead worker still held
    resent: list[int] = []  # per reaper pass: the wake-ups it sent again
    try:
        change_ids = []
        for _ in range(RUNS):
            system = SystemFactory(owner_team=team_a, target=dict(TARGET))
            change = make_change(author=engineer, system=system, suites=[suite.pk])
            change_services.change_request_submit(actor=engineer, change_request=change)
            change_ids.append(change.pk)
        run_ids = list(
            EvaluationRun.objects.filter(change_id__in=change_ids).values_list("id", flat=True)
        )
        assert len(run_ids) == RUNS
        cap = time.monotonic() + CAP_SECONDS
        rng = random.Random()
        last_reap = 0.0
        progress = {"done": -1, "at": time.monotonic()}

        def live_runs() -> int:
            return EvaluationRun.objects.filter(
                pk__in=run_ids, status__in=EvaluationRun.LIVE_STATUSES
            ).count()

        def leases_held(worker: Worker) -> int:
            return Batch.objects.filter(
                status=Batch.LEASED, lease_owner__contains=f"@{worker.name}:"
            ).count()

        def reap_when_due() -> None:
            nonlocal last_reap
            if time.monotonic() - last_reap >= REAP_EVERY:
                last_reap = time.monotonic()
                resent.append(reaper.leases_reap()["requeued"])

        def check_alive() -> None:
            for worker in workers:
                assert worker.alive(), f"a worker died on its own:\n{worker.output()}"

        def check_progress() -> None:
            """Fail on a stall (no batch finished for STALL_SECONDS) or past the cap."""
            now = time.monotonic()
            done = Batch.objects.filter(run_id__in=run_ids, status=Batch.DONE).count()
            if done != progress["done"]:
                progress.update(done=done, at=now)
            stalled = now - progress["at"]
            assert stalled < STALL_SECONDS and now < cap, (
                f"{live_runs()} of {RUNS} runs still live, {done} batches done, none finished "
                f"for {stalled:.0f}s (stall limit {STALL_SECONDS:.0f}s, cap "
                f"{CAP_SECONDS:.0f}s); kills={kills}\n" + "\n".join(w.output() for w in workers)
            )

        # When a chaos loop SIGKILLs a busy worker every 2-4 s and starts a replacement,
        # from the moment the first batch is leased (booting takes seconds on a loaded box).
        wait_for(lambda: Batch.objects.filter(run_id__in=run_ids).exclude(status="pending")
                 .exists(), timeout=BOOT_SECONDS, what="a worker to lease a batch",
                 workers=workers)  # fmt: skip
        chaos_start = time.monotonic()
        next_kill = chaos_start + rng.uniform(*KILL_EVERY)

        def chaos_goes_on() -> bool:
            # At least CHAOS_SECONDS, and on until a kill has orphaned a leased batch (on a
            # slow machine few kills happen in 40 s, and one may just miss its batch).
            if not live_runs():
                return False
            return time.monotonic() < chaos_start + CHAOS_SECONDS or not any(kills)

        while chaos_goes_on():
            check_alive()
            check_progress()
            reap_when_due()
            if time.monotonic() >= next_kill:
                # The worker holding the most leases, so the kill lands on work in flight
                # (a replacement still booting is not worth killing yet: wait for work).
                victim = max(workers, key=leases_held)
                if leases_held(victim):
                    victim.kill()
                    # Its process group is dead: a batch still leased to it was in flight.
                    kills.append(leases_held(victim))
                    workers.remove(victim)
                    workers.append(new_worker())
                    next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
            time.sleep(0.2)
        chaos_seconds = time.monotonic() - chaos_start

        # Then the surviving workers (and the reaper) finish every run.
        while live_runs():
            check_alive()
            check_progress()
            reap_when_due()
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.kill()
    elapsed = time.monotonic() - started

    runs = list(EvaluationRun.objects.filter(pk__in=run_ids))
    not_completed = {r.pk: (r.status, r.status_reason) for r in runs if r.status != "completed"}
    assert not_completed == {}
    assert all(r.verdict == "pass" for r in runs), {r.pk: r.verdict for r in runs}
    assert all(r.done_samples == r.total_samples == SAMPLES_PER_RUN for r in runs)

    per_run = dict(
        Sample.objects.filter(run_id__in=run_ids)
        .values("run_id")
        .annotate(n=Count("id"))
        .values_list("run_id", "n")
    )
    assert per_run == {r.pk: r.total_samples for r in runs}
    table = connection.ops.quote_name(Sample._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT run_id, scenario_id, condition, cue_index, epoch, COUNT(*) FROM {table} "  # noqa: S608
            "GROUP BY run_id, scenario_id, condition, cue_index, epoch HAVING COUNT(*) > 1"
        )
        duplicates = cursor.fetchall()
    assert duplicates == []
    assert not Batch.objects.filter(run_id__in=run_ids).exclude(status=Batch.DONE).exists()

    states_reached = set(
        ChangeRequest.objects.filter(pk__in=change_ids).values_list("state", flat=True)
    )
    assert states_reached == {states.AWAITING_REVIEW}
    # One start and one verdict per run, one evaluation verdict per change: a re-claimed
    # batch or a second finaliser never recorded anything twice.
    for verb, expected in (
        ("evaluation.run_started", sorted(run_ids)),
        ("evaluation.run_completed", sorted(run_ids)),
    ):
        recorded = AuditEvent.objects.filter(verb=verb, object_id__in=[str(i) for i in run_ids])
        assert sorted(int(i) for i in recorded.values_list("object_id", flat=True)) == expected
    passed = AuditEvent.objects.filter(
        verb="change.evaluation_passed", object_id__in=[str(i) for i in change_ids]
    )
    assert passed.count() == RUNS
    events, problem = audit.verify_chain()
    assert problem is None, problem

    # The chaos bit: at least one worker died holding a batch, and that batch was re-claimed.
    in_flight = sum(1 for held in kills if held)
    attempts = Batch.objects.filter(run_id__in=run_ids).aggregate(
        total=Sum("attempts"), n=Count("id")
    )
    assert in_flight >= 1, f"no kill landed on work in flight (kills: {kills})"
    assert attempts["total"] > attempts["n"]

    samples = sum(per_run.values())
    broker = settings.CELERY_BROKER_URL.split(":", 1)[0]
    print(
        f"\ncrash recovery [{connection.vendor}, {broker}]: {RUNS} runs, {samples} samples, "
        f"{len(kills)} kills ({in_flight} with work in flight, {sum(kills)} leased batches "
        f"orphaned), {attempts['total'] - attempts['n']} extra batch claims, "
        f"{sum(resent)} wake-ups re-sent by {len(resent)} reaper passes, "
        f"{events} audit events verified, chaos {chaos_seconds:.0f}s, total {elapsed:.0f}s"
    )
