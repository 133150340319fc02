"""changes.diff: unified text, side-by-side rows with intraline highlighting, folding."""

from __future__ import annotations

import re

from changes import diff
from tests.factories import ProtocolFactory, SystemFactory


def test_unified_diff_of_identical_texts_is_empty():
    # given two equal texts, when diffed, then there is nothing to show
    assert diff.unified_diff("a\nb", "a\nb") == ""
    assert diff.unified_lines("a\nb", "a\nb") == []


def test_unified_diff_marks_added_and_removed_lines():
    # given a replaced line and an added one
    text = diff.unified_diff("one\ntwo\nthree", "one\n2\nthree\nfour", fromfile="v1", tofile="v2")
    # then the patch names both sides and shows each change
    lines = text.split("\n")
    assert lines[0] == "--- v1" and lines[1] == "+++ v2"
    assert "-two" in lines and "+2" in lines and "+four" in lines
    kinds = [line["kind"] for line in diff.unified_lines("one\ntwo", "one\n2")]
    assert kinds == ["header", "header", "hunk", "equal", "delete", "insert"]


def test_side_by_side_rows_have_kinds_and_line_numbers():
    # given a base and a proposed text with each kind of change
    old = "keep\nchange me\ndrop"
    new = "keep\nchanged me\nadd 1\nadd 2"
    # when diffed side by side
    rows = diff.side_by_side(old, new)
    # then each row says what happened and where
    assert [r.kind for r in rows] == ["equal", "replace", "replace", "insert"]
    assert (rows[0].left_no, rows[0].right_no) == (1, 1)
    assert (rows[3].left_no, rows[3].right_no) == (None, 4)
    assert rows[3]["right"] == "add 2"  # dict-style access works too


def test_intraline_highlighting_marks_changed_words_only():
    # given one changed word
    rows = diff.side_by_side("Never quote e-mail addresses.", "Always redact e-mail addresses.")
    # then only that word is marked on each side
    assert rows[0].kind == "replace"
    assert str(rows[0].left_html) == "<del>Never quote</del> e-mail addresses."
    assert str(rows[0].right_html) == "<ins>Always redact</ins> e-mail addresses."


def test_highlighted_html_is_escaped():
    # given hostile text in a protocol
    rows = diff.side_by_side("<b>x</b>", "<script>alert(1)</script>")
    # then the markup is escaped, only our <del>/<ins> are tags
    html = str(rows[0].left_html) + str(rows[0].right_html)
    tags = re.findall(r"</?([a-z]+)", html)
    assert set(tags) <= {"del", "ins"}
    assert "&lt;" in html
    inserted = diff.side_by_side("", "\n<img src=x onerror=alert(1)>")
    assert all("<img" not in str(r.right_html) for r in inserted)


def test_deleted_lines_are_delete_rows():
    rows = diff.side_by_side("a\nb\nc", "a\nc")
    assert [r.kind for r in rows] == ["equal", "delete", "equal"]
    assert rows[1].right_no is None and rows[1].left == "b"


def test_long_equal_runs_fold_into_skip_rows():
    # given a one-line change in the middle of 40 equal lines
    base = "\n".join(f"line {i}" for i in range(40))
    proposed = base.replace("line 20", "line twenty")
    # when folded with 3 lines of context
    rows = diff.side_by_side(base, proposed, context=3)
    # then only the context around the change remains, the rest is counted
    kinds = [r.kind for r in rows]
    assert kinds == [
        "skip",
        "equal",
        "equal",
        "equal",
        "replace",
        "equal",
        "equal",
        "equal",
        "skip",
    ]
    assert rows[0].skipped == 17 and rows[-1].skipped == 16
    assert sum(r.skipped for r in rows) + 7 == 40


def test_stats_and_has_changes():
    rows = diff.side_by_side("a\nb", "a\nB\nc")
    assert diff.has_changes(rows)
    assert diff.stats(rows) == {"added": 2, "removed": 1}
    assert not diff.has_changes(diff.side_by_side("same", "same"))


def test_windows_line_endings_do_not_count_as_changes():
    assert not diff.has_changes(diff.side_by_side("a\r\nb", "a\nb"))


def test_protocol_diff_covers_system_prompt_and_body(db):
    # given two protocol versions of one system
    system = SystemFactory()
    v1 = ProtocolFactory(system=system, version="v1", body="# P\n\nQuote e-mails.")
    v2 = ProtocolFactory(system=system, version="v2", body="# P\n\nRedact e-mails.")
    # when diffed
    parts = diff.protocol_diff(v1, v2)
    # then both parts are there, labelled, with both views
    assert [p["key"] for p in parts] == ["system_prompt", "body"]
    body = parts[1]
    assert body["changed"] and body["stats"] == {"added": 1, "removed": 1}
    assert body["unified"][0]["text"] == "--- v1/body"
