"""Text diffs between protocol versions (Markdown body and system prompt), bounded in time.

``unified_diff`` is the familiar patch text; ``unified_lines`` classifies its lines for
display; ``side_by_side`` gives table rows with intraline highlighting; ``protocol_diff``
builds both parts of a protocol pair once and caches them by the two texts' hashes.
Highlighted fragments are built from escaped pieces only, so the HTML they carry is safe to
render. Why and how the work is bounded: ``docs/diff.md``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

EQUAL, INSERT, DELETE, REPLACE, SKIP = "equal", "insert", "delete", "replace", "skip"
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
# A sentence: text up to and including its closing punctuation and the blank after it.
_SENTENCE = re.compile(r"[^.!?;\n]*(?:[.!?;]+|\n|$)\s*")

# Line pairs longer than this (both sides, characters) are aligned by sentence first.
SENTENCES_FIRST_CHARS = 4000
CACHE_VERSION = 2  # bump when the shape of a cached part changes


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


class Budget:
    """Elementary steps a diff may still spend; shared by every level of one diff.

    Every comparison loop charges it, so the total work of a diff is bounded by the budget
    plus a linear pass over the input, whatever the texts are.
    """

    def __init__(self, steps: int):
        self.limit = steps
        self.spent = 0

    @property
    def left(self) -> int:
        return self.limit - self.spent

    def charge(self, steps: int) -> bool:
        """Record ``steps``; False once the budget is exhausted."""
        self.spent += steps
        return self.spent <= self.limit


def default_budget() -> Budget:
    return Budget(_setting("DIFF_STEP_BUDGET", 1_000_000))


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


# --- the sequence diff -------------------------------------------------------------------


def _myers(a: list[int], b: list[int], budget: Budget) -> list[tuple[str, int, int]] | None:
    """Myers' O((N+M)D) shortest edit script as (op, i, j) steps, or None over budget.

    ``a`` and ``b`` have no common prefix or suffix. Rounds of D are charged before they
    run, so memory (one snapshot per round, at most 2D+3 entries each) stays bounded too.
    """
    n, m = len(a), len(b)
    size = n + m
    off = size + 1
    v = [0] * (2 * size + 3)
    trace: list[list[int]] = []
    found = -1
    for d in range(size + 1):
        if not budget.charge(2 * d + 3):
            return None
        trace.append(v[off - d - 1 : off + d + 2])
        snakes = 0
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            start = x
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            snakes += x - start
            v[off + k] = x
            if x >= n and y >= m:
                found = d
                break
        if not budget.charge(snakes):
            return None
        if found >= 0:
            break
    steps: list[tuple[str, int, int]] = []
    x, y = n, m
    for d in range(found, -1, -1):
        snap = trace[d]  # v as it was before round d, indexed k + d + 1

        def at(k, snap=snap, d=d):
            return snap[k + d + 1]

        k = x - y
        prev_k = k + 1 if k == -d or (k != d and at(k - 1) < at(k + 1)) else k - 1
        prev_x = at(prev_k)
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:
            x -= 1
            y -= 1
            steps.append((EQUAL, x, y))
        if d > 0:
            if x == prev_x:
                steps.append((INSERT, prev_x, prev_y))
            else:
                steps.append((DELETE, prev_x, prev_y))
        x, y = prev_x, prev_y
    steps.reverse()
    return steps


def opcodes(a: list[str], b: list[str], budget: Budget) -> tuple[list[tuple], bool]:
    """difflib-style opcodes ``(tag, i1, i2, j1, j2)`` of ``a`` -> ``b`` and whether exact.

    The common prefix and suffix are always found (linear). The middle is aligned by Myers'
    algorithm within ``budget``; when that runs out, the whole middle is one ``replace``
    and the second value is False.
    """
    n, m = len(a), len(b)
    pre = 0
    while pre < n and pre < m and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < n - pre and suf < m - pre and a[n - 1 - suf] == b[m - 1 - suf]:
        suf += 1
    budget.charge((pre + suf) // 16)  # the linear trim, at a fraction of a compare step
    ops: list[tuple] = []
    if pre:
        ops.append((EQUAL, 0, pre, 0, pre))
    ai, bi = pre, pre
    ae, be = n - suf, m - suf
    exact = True
    if ai < ae or bi < be:
        steps = None
        if ai < ae and bi < be:
            codes: dict[str, int] = {}
            ca = [codes.setdefault(t, len(codes)) for t in a[ai:ae]]
            cb = [codes.setdefault(t, len(codes)) for t in b[bi:be]]
            steps = _myers(ca, cb, budget)
            exact = steps is not None
        if steps is None:
            tag = REPLACE if ai < ae and bi < be else (DELETE if ai < ae else INSERT)
            ops.append((tag, ai, ae, bi, be))
        else:
            ops.extend(_group(steps, ai, bi))
    if suf:
        ops.append((EQUAL, n - suf, n, m - suf, m))
    return ops, exact


def _group(steps, ai: int, bi: int) -> list[tuple]:
    """Runs of single steps -> opcodes; a run of deletions and insertions is a replace."""
    out: list[tuple] = []
    i = 0
    while i < len(steps):
        op, x, y = steps[i]
        j = i
        if op == EQUAL:
            while j < len(steps) and steps[j][0] == EQUAL:
                j += 1
            out.append((EQUAL, ai + x, ai + x + (j - i), bi + y, bi + y + (j - i)))
        else:
            dels = ins = 0
            while j < len(steps) and steps[j][0] != EQUAL:
                if steps[j][0] == DELETE:
                    dels += 1
                else:
                    ins += 1
                j += 1
            tag = REPLACE if dels and ins else (DELETE if dels else INSERT)
            out.append((tag, ai + x, ai + x + dels, bi + y, bi + y + ins))
        i = j
    return out


# --- unified text ------------------------------------------------------------------------


def _grouped(ops: list[tuple], n: int) -> list[list[tuple]]:
    """Hunks with ``n`` lines of context (difflib.SequenceMatcher.get_grouped_opcodes)."""
    codes = list(ops) or [(EQUAL, 0, 1, 0, 1)]
    if codes[0][0] == EQUAL:
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if codes[-1][0] == EQUAL:
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    nn = n + n
    group: list[tuple] = []
    groups = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == EQUAL and i2 - i1 > nn:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == EQUAL):
        groups.append(group)
    return groups


def _range(start: int, stop: int) -> str:
    """A unified-diff range, as difflib writes it."""
    beginning = start + 1
    length = stop - start
    if length == 1:
        return f"{beginning}"
    if not length:
        beginning -= 1
    return f"{beginning},{length}"


def _unified_from(left, right, ops, fromfile, tofile, context) -> list[str]:
    if all(op[0] == EQUAL for op in ops):
        return []
    out = [f"--- {fromfile}", f"+++ {tofile}"]
    for group in _grouped(ops, context):
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == EQUAL:
                out.extend(" " + line for line in left[i1:i2])
                continue
            if tag in (REPLACE, DELETE):
                out.extend("-" + line for line in left[i1:i2])
            if tag in (REPLACE, INSERT):
                out.extend("+" + line for line in right[j1:j2])
    return out


def unified_diff(a: str | None, b: str | None, *, fromfile: str = "a", tofile: str = "b",
                 context: int = 3, budget: Budget | None = None) -> str:  # fmt: skip
    """Unified diff text of ``a`` -> ``b``; empty when they are identical.

    Within the budget it is a minimal diff; past it, the changed middle is one hunk that
    removes the old lines and adds the new ones (still a correct patch).
    """
    left, right = _lines(a), _lines(b)
    ops, _ = opcodes(left, right, budget or default_budget())
    return "\n".join(_unified_from(left, right, ops, fromfile, tofile, context))


def _classify(text_lines: list[str]) -> list[dict]:
    out = []
    for line in text_lines:
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


def unified_lines(a: str | None, b: str | None, *, fromfile: str = "a", tofile: str = "b",
                  context: int = 3) -> list[dict]:  # fmt: skip
    """The unified diff as [{"kind": header|hunk|insert|delete|equal, "text"}] for display."""
    text = unified_diff(a, b, fromfile=fromfile, tofile=tofile, context=context)
    return _classify(text.split("\n")) if text else []


# --- intraline highlighting ----------------------------------------------------------------


def _segments(old: str, new: str, budget: Budget, *, sentences: bool) -> list[list]:
    """[changed?, old text, new text] pieces of one replaced line pair.

    Long lines are aligned by sentence first and each changed sentence pair by word, so a
    4.5 KB one-line prompt costs a few thousand steps, not millions. A pair the budget
    cannot afford is marked changed as a whole.
    """
    split = _SENTENCE.findall if sentences else _TOKEN.findall
    a, b = [t for t in split(old) if t], [t for t in split(new) if t]
    ops, exact = opcodes(a, b, budget)
    out: list[list] = []
    word_cap = _setting("DIFF_WORD_LEVEL_MAX_CHARS", 16_000)
    for tag, i1, i2, j1, j2 in ops:
        old_part, new_part = "".join(a[i1:i2]), "".join(b[j1:j2])
        affordable = exact and budget.left > 0 and len(old_part) + len(new_part) <= word_cap
        if tag == REPLACE and sentences and affordable:
            out.extend(_segments(old_part, new_part, budget, sentences=False))
            continue
        out.append([tag != EQUAL, old_part, new_part])
    return out


def _intraline(old: str, new: str, budget: Budget | None = None) -> tuple[SafeString, SafeString]:
    """Mark the changed words of a replaced line pair with <del>/<ins>."""
    budget = budget or default_budget()
    if budget.left <= 0:
        segments = [[True, old, new]]
    else:
        long = len(old) + len(new) > SENTENCES_FIRST_CHARS
        segments = _segments(old, new, budget, sentences=long)
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


# --- side by side --------------------------------------------------------------------------


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


def _rows(left, right, ops, budget: Budget, *, exact: bool) -> list[Row]:
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in ops:
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
            # Pair lines for highlighting only when the alignment is real: a coarse block
            # (budget exhausted) is shown as removed and added lines.
            pairs = min(i2 - i1, j2 - j1) if exact else 0
            for k in range(pairs):
                old, new = left[i1 + k], right[j1 + k]
                lh, rh = _intraline(old, new, budget)
                rows.append(_row(REPLACE, i1 + k + 1, old, j1 + k + 1, new, lh, rh))
            for i in range(i1 + pairs, i2):
                rows.append(_row(DELETE, i + 1, left[i], None, ""))
            for j in range(j1 + pairs, j2):
                rows.append(_row(INSERT, None, "", j + 1, right[j]))
    return rows


def side_by_side(a: str | None, b: str | None, *, context: int | None = None,
                 budget: Budget | None = None) -> list[Row]:  # fmt: skip
    """Rows of kind equal/insert/delete/replace pairing the lines of ``a`` and ``b``.

    With ``context``, runs of equal lines longer than twice that are folded into one row of
    kind ``skip`` (``skipped`` = how many lines were hidden).
    """
    budget = budget or default_budget()
    left, right = _lines(a), _lines(b)
    ops, exact = opcodes(left, right, budget)
    rows = _rows(left, right, ops, budget, exact=exact)
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


# --- one protocol pair, computed once ---------------------------------------------------


def _sha(text: str | None) -> str:
    return hashlib.sha256(str(text or "").encode("utf-8", "surrogatepass")).hexdigest()


def too_large_part(a: str | None, b: str | None) -> dict:
    """A part not diffed inline: the page says so and links to both full versions."""
    changed = _lines(a) != _lines(b)
    return {
        "rows": [],
        "changed": changed,
        "stats": {"added": None, "removed": None},
        "unified": [],
        "too_large": changed,
        "coarse": changed,
        "steps": 0,
    }


def diff_part(a: str | None, b: str | None, *, fromfile: str, tofile: str,
              context: int | None = None) -> dict:  # fmt: skip
    """One part's rows, stats and unified lines, under one budget.

    ``too_large`` when either text exceeds ``DIFF_INLINE_MAX_CHARS`` (nothing is diffed;
    pages link to the full versions); ``coarse`` when the budget ran out and some block is
    shown as removed-then-added rather than aligned.
    """
    if max(len(a or ""), len(b or "")) > _setting("DIFF_INLINE_MAX_CHARS", 1_000_000):
        return too_large_part(a, b)
    budget = default_budget()
    left, right = _lines(a), _lines(b)
    ops, exact = opcodes(left, right, budget)
    # Rows the changed blocks will take: paired lines share a row, a coarse block does not.
    changed_rows = sum(
        max(i2 - i1, j2 - j1) if exact else (i2 - i1) + (j2 - j1)
        for tag, i1, i2, j1, j2 in ops
        if tag != EQUAL
    )
    if changed_rows > _setting("DIFF_INLINE_MAX_CHANGED_ROWS", 1000):
        # More rows than a page can usefully show (or render fast): link to both versions.
        return {**too_large_part(a, b), "steps": budget.spent}
    rows = _rows(left, right, ops, budget, exact=exact)
    intraline_exhausted = budget.left < 0
    return {
        "rows": _fold(rows, context) if context is not None else rows,
        "changed": has_changes(rows),
        "stats": stats(rows),
        "unified": _classify(_unified_from(left, right, ops, fromfile, tofile, 3)),
        "too_large": False,
        "coarse": not exact or intraline_exhausted,
        "steps": budget.spent,
    }


def _cache():
    return caches["diffs"] if "diffs" in settings.CACHES else caches["default"]


def protocol_diff(base, proposed, *, context: int | None = None) -> list[dict]:
    """Both diffed parts of two protocol versions, ready for the diff template.

    Each part is cached under the hashes of its two texts (and the labels and context it was
    built with), so a protocol pair is diffed once, not on every page view.
    """
    parts = []
    for label, attr in (("System prompt", "system_prompt"), ("Protocol body", "body")):
        a, b = getattr(base, attr), getattr(proposed, attr)
        fromfile, tofile = f"{base.version}/{attr}", f"{proposed.version}/{attr}"
        key = "pcm:diff:{}:{}:{}:{}:{}".format(
            CACHE_VERSION, _sha(a), _sha(b), _sha(f"{fromfile}\0{tofile}")[:16], context
        )
        store = _cache()
        part = store.get(key)
        if part is None:
            part = diff_part(a, b, fromfile=fromfile, tofile=tofile, context=context)
            store.set(key, part, _setting("DIFF_CACHE_SECONDS", 24 * 3600))
        parts.append({"label": label, "key": attr, **part})
    return parts
