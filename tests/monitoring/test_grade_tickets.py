"""Grade tickets list exactly the decisions ingestion stored, and graders claim them
exactly once (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, two graders racing)."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection, connections, transaction
from django.db.models import Sum

from monitoring import grading, services
from monitoring.models import Decision, GradeBatch, GradeTicket, Rollup

from .conftest import decision, jsonl, labels, post_jsonl, store

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and COPY are PostgreSQL's"
)


def ticketed() -> list[int]:
    return sorted(pk for ids in GradeTicket.objects.values_list("ids", flat=True) for pk in ids)


def ids_of(keys) -> list[int]:
    return sorted(Decision.objects.filter(idempotency_key__in=keys).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_ticket_lists_exactly_the_stored_decisions(ingest_client, deployed, live_hash):
    records = [decision(live_hash) for _ in range(3)]
    assert post_jsonl(ingest_client, deployed.system_id, jsonl(records)).json()["accepted"] == 3
    (ticket,) = GradeTicket.objects.all()
    first = ids_of(r["idempotency_key"] for r in records)
    assert ticket.ids == first and (ticket.first_id, ticket.last_id) == (first[0], first[-1])
    assert ticket.change_id == deployed.pk and ticket.system_id == deployed.system_id
    # A replay stores nothing and writes no ticket; a partly new batch lists the new row only.
    again = post_jsonl(ingest_client, deployed.system_id, jsonl(records)).json()
    assert again["accepted"] == 0 and GradeTicket.objects.count() == 1
    fresh = decision(live_hash)
    mixed = post_jsonl(ingest_client, deployed.system_id, jsonl([*records, fresh])).json()
    assert mixed["accepted"] == 1 and mixed["duplicates"] == 3
    assert ticketed() == sorted([*first, *ids_of([fresh["idempotency_key"]])])


@pytest.mark.django_db
def test_unapproved_decisions_get_no_ticket(ingest_client, deployed, live_hash):
    body = jsonl([decision("f" * 64)])
    assert post_jsonl(ingest_client, deployed.system_id, body).json()["unapproved"] == 1
    assert not GradeTicket.objects.exists()


@pytest.mark.django_db
def test_tickets_are_bounded_by_the_grade_batch(ingest_client, deployed, live_hash, settings):
    settings.MONITORING_GRADE_BATCH = 4
    records = [decision(live_hash) for _ in range(10)]
    post_jsonl(ingest_client, deployed.system_id, jsonl(records))
    sizes = sorted(len(ids) for ids in GradeTicket.objects.values_list("ids", flat=True))
    assert sizes == [2, 4, 4]
    assert ticketed() == ids_of(r["idempotency_key"] for r in records)


def test_large_records_are_stored_in_batches_bounded_by_their_text(
    ingest_client, deployed, live_hash, settings
):
    """The byte bound stores a batch before the count bound does, so a request of large
    records never holds more than about MONITORING_INGEST_BATCH_BYTES of text."""
    settings.MONITORING_INGEST_BATCH = 1000
    settings.MONITORING_INGEST_BATCH_BYTES = 25_000
    records = [
        decision(live_hash, output="NEEDS_SECOND_APPROVER " + "x" * 10_000) for _ in range(7)
    ]
    with mock.patch.object(services, "_store_batch", wraps=services._store_batch) as spy:
        response = post_jsonl(ingest_client, deployed.system_id, jsonl(records))
        stored = [len(call.args[1]) for call in spy.call_args_list]
    assert response.status_code == 200 and response.json()["accepted"] == 7
    assert stored == [3, 3, 1]  # 3 x ~10k characters reach 25,000
    assert ticketed() == ids_of(r["idempotency_key"] for r in records)


@postgres_only
@pytest.mark.django_db
def test_a_batch_racing_a_replay_past_the_lookup_tickets_only_what_it_stored(
    ingest_client, deployed, live_hash
):
    """The COPY conflicts (a concurrent request stored one key after our lookup): the
    fallback ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` says which rows were ours."""
    old = decision(live_hash)
    post_jsonl(ingest_client, deployed.system_id, jsonl([old]))
    before = ticketed()
    fresh = [decision(live_hash) for _ in range(2)]
    blind = mock.MagicMock()
    blind.objects.filter.return_value.values_list.return_value = []  # the lookup misses it
    with mock.patch.object(services, "Decision", blind):
        report = post_jsonl(ingest_client, deployed.system_id, jsonl([old, *fresh])).json()
    assert report["accepted"] == 2 and report["duplicates"] == 1
    assert ticketed() == sorted([*before, *ids_of(f["idempotency_key"] for f in fresh)])
    assert Decision.objects.filter(idempotency_key=old["idempotency_key"]).count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_second_grader_skips_the_tickets_another_holds(monitor, deployed, settings):
    settings.MONITORING_GRADE_BATCH = 5
    first = store(deployed, ["NEEDS_SECOND_APPROVER"] * 5)
    second = store(deployed, ["I approve."] * 5)
    held, release = threading.Event(), threading.Event()

    def other_grader():
        try:
            with transaction.atomic():
                claimed = grading._claim(None, 5)
                assert [t.ids for t in claimed] == [[d.pk for d in first]]
                held.set()
                release.wait(30)
                raise RuntimeError("roll back: the held tickets stay")
        except RuntimeError:
            pass
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_grader)
    thread.start()
    assert held.wait(30)
    try:
        graded = grading.grade_batch()
        assert sorted(r.pk for r in graded) == [d.pk for d in second]
        assert grading.grade_batch() == []  # the held ticket is skipped, not waited for
    finally:
        release.set()
        thread.join(30)
    assert grading.grade_pending() == 5  # released: graded once, now
    assert len(labels()) == 10


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_graders_grade_each_decision_exactly_once(monitor, deployed, settings):
    settings.MONITORING_GRADE_BATCH = 50
    made = []
    for _ in range(8):
        made += store(deployed, ["NEEDS_SECOND_APPROVER", "I approve.", "hmm"] * 50)
    counts: list[int] = []
    start = threading.Barrier(2)

    def grader():
        try:
            start.wait(30)
            counts.append(grading.grade_pending(system_id=deployed.system_id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=grader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(counts) == len(made) == 1200
    logged = [pk for ids in GradeBatch.objects.values_list("ids", flat=True) for pk in ids]
    assert sorted(logged) == sorted(d.pk for d in made)  # each once
    assert not GradeTicket.objects.exists()
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == 1200


@pytest.mark.django_db
def test_a_read_returns_only_the_claimed_tickets_decisions(monitor, deployed):
    """Two requests' decisions of one change interleave in the id sequence: reading one
    ticket's run (a range scan on PostgreSQL) must not take the other ticket's rows."""
    made = store(deployed, ["NEEDS_SECOND_APPROVER"] * 5)
    GradeTicket.objects.all().delete()
    mine, theirs = made[::2], made[1::2]
    for part in (mine, theirs):
        GradeTicket.objects.create(
            change=deployed, system_id=deployed.system_id, ids=[d.pk for d in part],
            size=len(part), first_id=part[0].pk, last_id=part[-1].pk,
            ts_min=part[0].timestamp, ts_max=part[-1].timestamp,
        )  # fmt: skip
    first = grading._claim(None, 3)
    assert [t.ids for t in first] == [[d.pk for d in mine]]
    assert [r.pk for r in grading._read(first)] == [d.pk for d in mine]
