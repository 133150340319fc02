"""Several threads approve and deploy the same change at once, on PostgreSQL.

Row locks (select_for_update) serialise the transitions and the advisory lock serialises
audit appends: exactly one deploy, no duplicate approvals, an unforked audit chain.
"""

import threading

import pytest
from django.db import connection, connections

from changes import audit, services, states
from changes.models import AuditEvent, Deployment, Review
from core.errors import DomainError, InvalidTransition
from tests.factories import PASSWORD, SystemFactory, UserFactory, make_change

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)"
    ),
]


def _run_all(functions):
    barrier = threading.Barrier(len(functions))
    outcomes = [None] * len(functions)

    def worker(index, fn):
        try:
            barrier.wait(timeout=10)
            fn()
            outcomes[index] = "ok"
        except (DomainError, InvalidTransition) as exc:
            outcomes[index] = type(exc).__name__
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, f)) for i, f in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_approvals_and_deploys(
    engineer, reviewer, reviewer2, pipeline, team_b, passing_evaluations, recorded_attestations
):
    # given a high-criticality change awaiting review, and two more independent reviewers
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="high")
    change = make_change(author=engineer, system=system)
    services.change_request_submit(actor=engineer, change_request=change)
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
    )
    extra = [UserFactory(username=f"rev{i}", roles=["reviewer"], team=team_b) for i in range(2)]
    reviewers = [reviewer, reviewer2, *extra]

    def approve(user):
        return lambda: services.review_submit(
            actor=user, change_request=change, decision="approve", password=PASSWORD
        )

    def deploy():
        return services.change_request_deploy(actor=pipeline, change_request=change)

    # when every reviewer approves twice and the pipeline deploys four times, all at once
    fns = [approve(u) for u in reviewers for _ in range(2)] + [deploy] * 4
    _run_all(fns)
    # and the stragglers deploy after everyone signed
    _run_all([deploy] * 4)

    # then exactly one deploy happened, each reviewer approved at most once, chain intact
    change.refresh_from_db()
    assert change.state == states.DEPLOYED
    assert Deployment.objects.filter(change=change).count() == 1
    per_reviewer = Review.objects.filter(change=change, decision="approve").values_list(
        "reviewer_id", flat=True
    )
    assert len(per_reviewer) == len(set(per_reviewer))
    assert AuditEvent.objects.filter(verb="change.deployed").count() == 1
    assert AuditEvent.objects.filter(verb="change.approved").count() == 1
    count, problem = audit.verify_chain()
    assert problem is None
    prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(prevs) == len(set(prevs)) == count


def test_concurrent_audit_appends_never_fork(engineer):
    # given many threads appending at once
    fns = [
        (lambda n=n: audit.append(actor=None, verb="test.concurrent", data={"n": n}))
        for n in range(16)
    ]
    # when they all append
    before = AuditEvent.objects.count()
    outcomes = _run_all(fns)
    # then every append landed and the chain is one line
    assert outcomes == ["ok"] * 16
    assert AuditEvent.objects.count() == before + 16
    assert audit.verify_chain()[1] is None
