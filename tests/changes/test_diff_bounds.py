"""The diff is bounded: adversarial long lines cost a fixed budget, and a pair is diffed once.

The red team's input: two 4.5 KB single-line system prompts made the change page take 97 s
(difflib's matcher is cubic on repetitive tokens). These tests fail on that code.
"""

from __future__ import annotations

import random
import time

import pytest
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from changes import diff
from tests.factories import ProtocolFactory, SystemFactory, make_change

RED_TEAM_OLD = "a " * 2250  # 4.5 KB, one line
RED_TEAM_NEW = "b " * 2250


def _apply(a, b, ops):
    out = []
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
            out.extend(a[i1:i2])
        else:
            out.extend(b[j1:j2])
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcx"), max_size=30),
    st.lists(st.sampled_from("abcy"), max_size=30),
)
def test_opcodes_always_rebuild_the_new_text_and_cover_both_sides(a, b):
    # given any two sequences, exact or out of budget
    for budget in (diff.Budget(10**6), diff.Budget(3)):
        ops, _ = diff.opcodes(a, b, budget)
        # then the opcodes are contiguous over both sides and rebuild the new one
        assert _apply(a, b, ops) == b
        assert sum(i2 - i1 for _, i1, i2, _, _ in ops) == len(a)
        assert sum(j2 - j1 for _, _, _, j1, j2 in ops) == len(b)


def test_opcodes_within_budget_are_minimal():
    # given sequences with a known shortest edit (one delete, one insert)
    ops, exact = diff.opcodes(list("abcdef"), list("abdefg"), diff.Budget(10_000))
    assert exact
    changed = sum(max(i2 - i1, j2 - j1) for t, i1, i2, j1, j2 in ops if t != "equal")
    assert changed == 2


def test_red_team_single_line_prompts_cost_a_bounded_number_of_steps():
    # given the red team's two 4.5 KB single-line prompts
    budget = diff.Budget(1_000_000)
    started = time.perf_counter()
    rows = diff.side_by_side(RED_TEAM_OLD, RED_TEAM_NEW, budget=budget)
    elapsed = time.perf_counter() - started
    # then the work stays within the budget (plus one round's overshoot), fast
    assert budget.spent <= budget.limit + 20_000
    assert elapsed < 2.0
    # and the row still shows both sides, escaped and marked as changed
    assert [r.kind for r in rows] == ["replace"]
    assert "<del>" in rows[0].left_html and "<ins>" in rows[0].right_html


def test_realistic_long_line_still_gets_word_highlights():
    # given a 4.5 KB one-line prompt in which one sentence changed
    sentences = [f"Rule {i}: never reveal secret number {i}." for i in range(120)]
    old = " ".join(sentences)
    new = old.replace("Rule 60: never reveal", "Rule 60: always redact")
    budget = diff.Budget(1_000_000)
    rows = diff.side_by_side(old, new, budget=budget)
    # then only the changed words are marked, at a small cost
    assert str(rows[0].left_html).count("<del>") == 1
    assert "<del>never reveal</del>" in rows[0].left_html
    assert "<ins>always redact</ins>" in rows[0].right_html
    assert budget.spent < 50_000


@pytest.mark.parametrize(
    "old,new",
    [
        ("a " * 50_000, "b " * 50_000),  # 100 KB single lines, nothing in common
        ("a\n" * 50_000, "b\n" * 50_000),  # 100 KB of one-character lines
        ("a\nx\n" * 25_000, "a\ny\n" * 25_000),  # repetitive lines: difflib's worst case
    ],
    ids=["one-line", "many-lines", "alternating"],
)
def test_100kb_protocols_diff_fast(old, new):
    # given two 100 KB adversarial texts
    started = time.perf_counter()
    part = diff.diff_part(old, new, fromfile="a", tofile="b", context=4)
    # then the diff finishes within its budget and a generous time bound
    assert part["steps"] <= 1_000_000 + 200_000
    assert time.perf_counter() - started < 2.0
    assert part["changed"]
    assert part["coarse"] or all(r.kind == "replace" for r in part["rows"])


def test_unified_diff_is_bounded_and_still_a_correct_patch():
    started = time.perf_counter()
    text = diff.unified_diff("a\nx\n" * 25_000, "a\ny\n" * 25_000)
    assert time.perf_counter() - started < 2.0
    lines = text.split("\n")
    assert sum(1 for line in lines if line.startswith("-") and not line.startswith("---")) == 49_999
    assert sum(1 for line in lines if line.startswith("+") and not line.startswith("+++")) == 49_999


def test_too_many_changed_lines_is_too_large_to_diff_inline(settings):
    settings.DIFF_INLINE_MAX_CHANGED_ROWS = 10
    part = diff.diff_part("\n".join("abcdefghijkl"), "\n".join("ABCDEFGHIJKL"), fromfile="a",
                          tofile="b")  # fmt: skip
    assert part["too_large"] and part["rows"] == [] and part["changed"]


def test_texts_over_the_size_cap_are_not_diffed(settings):
    settings.DIFF_INLINE_MAX_CHARS = 100
    part = diff.diff_part("x" * 101, "y", fromfile="a", tofile="b")
    assert part["too_large"] and part["steps"] == 0
    same = diff.diff_part("x" * 101, "x" * 101, fromfile="a", tofile="b")
    assert not same["too_large"] and not same["changed"]


def test_protocol_pair_is_diffed_once(db, monkeypatch):
    # given two protocol versions
    diff._cache().clear()
    system = SystemFactory()
    v1 = ProtocolFactory(system=system, version="v1", body="# P\n\nQuote.")
    v2 = ProtocolFactory(system=system, version="v2", body="# P\n\nRedact.")
    calls = []
    real = diff.diff_part
    monkeypatch.setattr(diff, "diff_part", lambda *a, **k: calls.append(1) or real(*a, **k))
    # when the pair is diffed three times
    first = diff.protocol_diff(v1, v2, context=4)
    diff.protocol_diff(v1, v2, context=4)
    again = diff.protocol_diff(v1, v2, context=4)
    # then each part was computed once, and the cached copy is the same, still safe HTML
    assert len(calls) == 2
    assert [p["stats"] for p in first] == [p["stats"] for p in again]
    row = next(r for r in again[1]["rows"] if r.kind == "replace")
    assert "<del>Quote</del>" in row.left_html and hasattr(row.left_html, "__html__")


def _change_with_prompts(engineer, old, new):
    change = make_change(author=engineer)
    system = change.system
    base = ProtocolFactory(system=system, version="big-v1", system_prompt=old, body=old)
    proposed = ProtocolFactory(system=system, version="big-v2", system_prompt=new, body=new)
    type(change).objects.filter(pk=change.pk).update(base_protocol=base, proposed_protocol=proposed)
    return change


def test_change_page_with_red_team_prompts_renders_fast(client, engineer):
    # given a change whose two protocols are the red team's 4.5 KB single-line prompts
    diff._cache().clear()
    change = _change_with_prompts(engineer, RED_TEAM_OLD, RED_TEAM_NEW)
    client.force_login(engineer)
    started = time.perf_counter()
    response = client.get(reverse("change-detail", args=[change.pk]))
    # then the page answers in well under the 97 s it took (generous bound, slow CI)
    assert response.status_code == 200
    assert time.perf_counter() - started < 5.0
    assert b"<del>" in response.content


def test_change_page_with_100kb_protocols_renders_fast_or_links_out(client, engineer):
    # given 100 KB protocols whose every line changed
    diff._cache().clear()
    rng = random.Random(7)
    words = ["the", "model", "must", "not", "reveal", "any", "data", "and", "policy"]

    def text():
        return "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(1400))

    change = _change_with_prompts(engineer, text(), text())
    client.force_login(engineer)
    started = time.perf_counter()
    response = client.get(reverse("change-detail", args=[change.pk]))
    assert response.status_code == 200
    assert time.perf_counter() - started < 5.0
    # then the page says it is too large to diff inline and links to both full versions
    body = response.content.decode()
    assert "Too large to diff inline" in body
    for protocol in (change.base_protocol, change.proposed_protocol):
        protocol.refresh_from_db()
    change.refresh_from_db()
    assert reverse("protocol-detail", args=[change.system_id, change.base_protocol_id]) in body
    assert reverse("protocol-detail", args=[change.system_id, change.proposed_protocol_id]) in body


def test_out_of_budget_blocks_are_shown_as_removed_then_added(client, engineer, settings):
    # given a diff whose budget cannot align the lines
    diff._cache().clear()
    settings.DIFF_STEP_BUDGET = 50
    change = _change_with_prompts(engineer, "\n".join("abcdefgh"), "\n".join("hgfedcbaX"))
    client.force_login(engineer)
    body = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    # then the page says so instead of pretending lines were aligned
    assert "data-diff-coarse" in body


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="ab .!?;,<&\t", max_size=300),
    st.text(alphabet="ab .!?;,<&\t", max_size=300),
    st.sampled_from([10, 500, 1_000_000]),
)
def test_highlighting_never_loses_or_invents_text(old, new, steps):
    # given any two lines, long or short, and any budget (sentence-first above 4,000 chars)
    import html
    import re

    for a, b in ((old, new), (old * 15, new * 15)):
        left, right = diff._intraline(a, b, diff.Budget(steps))
        # then removing the highlight tags gives back exactly the two texts
        assert html.unescape(re.sub(r"</?(del|ins)>", "", str(left))) == a
        assert html.unescape(re.sub(r"</?(del|ins)>", "", str(right))) == b
