"""The attestation's review section counts the discussion threads of the attested content
(issue 14, item 4): resolved, unresolved and blocking unresolved, read from a real render."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import pytest

from attestations.pdf import pdf_text
from reviews import discussion
from reviews.models import Thread
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    enqueued,
    make_run,
    make_suite,
    passing_evaluation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def squash(text: str) -> str:
    return " ".join(text.split())


def test_the_pdf_counts_resolved_unresolved_and_blocking_threads_of_the_attested_hash(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given: a change with threads on its content: 2 resolved, 1 open, 1 open and blocking...
    change = make_change(author=engineer)
    opened = [
        discussion.thread_open(actor=reviewer, change=change, body=f"Point {i}") for i in range(3)
    ]
    for thread in opened[:2]:
        discussion.thread_resolve(actor=reviewer, thread=thread, resolved=True)
    discussion.thread_open(actor=reviewer, change=change, body="Must fix", blocking=True)
    # ... and one thread written on earlier content (another hash)
    older = discussion.thread_open(actor=reviewer, change=change, body="On v-old")
    Thread.objects.filter(pk=older.pk).update(content_sha256="0" * 64)
    # ... and a blocking thread that was resolved (it counts as resolved, not blocking)
    extra = discussion.thread_open(actor=reviewer, change=change, body="Fixed", blocking=True)
    discussion.thread_resolve(actor=reviewer, thread=extra, resolved=True)

    # when: it is approved and its attestation is rendered by the worker
    approve(change, author=engineer, reviewers=[reviewer])
    (row,) = render_pending()
    assert row.status == row.READY, row.error

    # then: the signed facts carry the counts of the attested hash only
    facts = row.facts["discussion"]
    assert facts == {
        "content_sha256": change.content_sha256,
        "threads": 5,
        "resolved": 3,
        "unresolved": 2,
        "unresolved_blocking": 1,
        "earlier_content_threads": 1,
    }
    # and the PDF's review section says so in words
    text = squash(pdf_text(bytes(row.pdf)))
    assert "Discussion" in text
    assert "5 thread(s), 3 resolved, 2 unresolved (1 blocking unresolved)" in text
    assert "1 more thread(s) were opened on earlier content" in text


def test_a_change_without_threads_says_zero(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    (row,) = render_pending()
    assert row.facts["discussion"]["threads"] == 0
    text = squash(pdf_text(bytes(row.pdf)))
    assert "0 thread(s), 0 resolved, 0 unresolved (0 blocking unresolved)" in text
    assert "earlier content" not in text
