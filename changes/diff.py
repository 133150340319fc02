"""Text diffs between protocol versions (Markdown body and system prompt), using difflib.

``unified_diff`` is the familiar patch text; ``unified_lines`` classifies its lines for
display; ``side_by_side`` gives table rows with intraline highlighting. Highlighted fragments
are built from escaped pieces only, so the HTML they carry is safe to render.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

EQUAL, INSERT, DELETE, REPLACE, SKIP = "equal", "insert", "delete", "replace", "skip"
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class Row:
    """One row of a side-by-side diff. ``left_no``/``right_no`` are 1-based, None if absent."""

    kind: str
    left_no: int | None
    left: str
    right_no: int | None
    right: str
    left_html: SafeString
    right_html: SafeString
    skipped: int = 0  # for SKIP rows: how many equal lines were folded

    def __getitem__(self, key):  # dict-style access for callers that prefer it
        return getattr(self, key)


def _lines(text: str | None) -> list[str]:
    return str(text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def unified_diff(a: str | None, b: str | None, *, fromfile: str = "a", tofile: str = "b",
                 context: int = 3) -> str:  # fmt: skip
    """Unified diff text of ``a`` -> ``b``; empty when they are identical."""
    return "\n".join(
        difflib.unified_diff(
            _lines(a), _lines(b), fromfile=fromfile, tofile=tofile, n=context, lineterm=""
        )
    )


def unified_lines(a: str | None, b: str | None, *, fromfile: str = "a", tofile: str = "b",
                  context: int = 3) -> list[dict]:  # fmt: skip
    """The unified diff as [{"kind": header|hunk|insert|delete|equal, "text"}] for display."""
    out = []
    text = unified_diff(a, b, fromfile=fromfile, tofile=tofile, context=context)
    for line in text.split("\n") if text else []:
        if line.startswith(("---", "+++")) and len(out) < 2:
            kind = "header"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = INSERT
        elif line.startswith("-"):
            kind = DELETE
        else:
            kind = EQUAL
        out.append({"kind": kind, "text": line})
    return out


def _intraline(old: str, new: str) -> tuple[SafeString, SafeString]:
    """Mark the changed words of a replaced line pair with <del>/<ins>."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    segments: list[list] = []  # [changed?, old text, new text]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        segments.append([tag != EQUAL, "".join(a[i1:i2]), "".join(b[j1:j2])])
    # A lone space between two changed words reads better inside one highlight.
    for k in range(1, len(segments) - 1):
        seg = segments[k]
        if not seg[0] and not seg[1].strip() and segments[k - 1][0] and segments[k + 1][0]:
            seg[0] = True
    merged: list[list] = []
    for seg in segments:
        if merged and merged[-1][0] == seg[0]:
            merged[-1][1] += seg[1]
            merged[-1][2] += seg[2]
        else:
            merged.append(list(seg))
    left, right = [], []
    for changed, old_text, new_text in merged:
        old_part, new_part = escape(old_text), escape(new_text)
        if not changed:
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return mark_safe("".join(left)), mark_safe("".join(right))  # noqa: S308 - escaped pieces


def _row(kind, left_no, left, right_no, right, left_html=None, right_html=None) -> Row:
    return Row(
        kind=kind,
        left_no=left_no,
        left=left,
        right_no=right_no,
        right=right,
        left_html=left_html if left_html is not None else escape(left),
        right_html=right_html if right_html is not None else escape(right),
    )


def side_by_side(a: str | None, b: str | None, *, context: int | None = None) -> list[Row]:
    """Rows of kind equal/insert/delete/replace pairing the lines of ``a`` and ``b``.

    With ``context``, runs of equal lines longer than twice that are folded into one row of
    kind ``skip`` (``skipped`` = how many lines were hidden).
    """
    left, right = _lines(a), _lines(b)
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == EQUAL:
            for k in range(i2 - i1):
                rows.append(_row(EQUAL, i1 + k + 1, left[i1 + k], j1 + k + 1, right[j1 + k]))
        elif tag == DELETE:
            for i in range(i1, i2):
                rows.append(_row(DELETE, i + 1, left[i], None, ""))
        elif tag == INSERT:
            for j in range(j1, j2):
                rows.append(_row(INSERT, None, "", j + 1, right[j]))
        else:
            pairs = min(i2 - i1, j2 - j1)
            for k in range(pairs):
                old, new = left[i1 + k], right[j1 + k]
                lh, rh = _intraline(old, new)
                rows.append(_row(REPLACE, i1 + k + 1, old, j1 + k + 1, new, lh, rh))
            for i in range(i1 + pairs, i2):
                rows.append(_row(DELETE, i + 1, left[i], None, ""))
            for j in range(j1 + pairs, j2):
                rows.append(_row(INSERT, None, "", j + 1, right[j]))
    if context is not None:
        rows = _fold(rows, context)
    return rows


def _fold(rows: list[Row], context: int) -> list[Row]:
    out: list[Row] = []
    i = 0
    while i < len(rows):
        if rows[i].kind != EQUAL:
            out.append(rows[i])
            i += 1
            continue
        j = i
        while j < len(rows) and rows[j].kind == EQUAL:
            j += 1
        run = rows[i:j]
        keep_head = context if i > 0 else 0
        keep_tail = context if j < len(rows) else 0
        if len(run) > keep_head + keep_tail + 1:
            hidden = len(run) - keep_head - keep_tail
            out.extend(run[:keep_head])
            out.append(Row(SKIP, None, "", None, "", mark_safe(""), mark_safe(""), hidden))
            out.extend(run[len(run) - keep_tail :])
        else:
            out.extend(run)
        i = j
    return out


def has_changes(rows: list[Row]) -> bool:
    return any(r.kind not in (EQUAL, SKIP) for r in rows)


def stats(rows: list[Row]) -> dict:
    """Counts of added and removed lines (a replaced line counts as one of each)."""
    added = sum(1 for r in rows if r.kind in (INSERT, REPLACE))
    removed = sum(1 for r in rows if r.kind in (DELETE, REPLACE))
    return {"added": added, "removed": removed}


def protocol_diff(base, proposed, *, context: int | None = None) -> list[dict]:
    """Both diffed parts of two protocol versions, ready for the diff template."""
    parts = []
    for label, attr in (("System prompt", "system_prompt"), ("Protocol body", "body")):
        a, b = getattr(base, attr), getattr(proposed, attr)
        rows = side_by_side(a, b, context=context)
        parts.append(
            {
                "label": label,
                "key": attr,
                "rows": rows,
                "changed": has_changes(rows),
                "stats": stats(rows),
                "unified": unified_lines(
                    a, b, fromfile=f"{base.version}/{attr}", tofile=f"{proposed.version}/{attr}"
                ),
            }
        )
    return parts
