"""Pure rules for environments: blackout windows, rollout stages and the three-way merge.

No ORM here; the services call these and turn ``ValueError`` into a 400 with the message.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from datetime import datetime

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK = 7 * 24 * 60
_POINT = re.compile(r"^\s*([a-z]{3})\s+([01]\d|2[0-3]):([0-5]\d)\s*$")


def _minute_of_week(text) -> int:
    match = _POINT.match(str(text).lower()) if isinstance(text, str) else None
    if not match or match.group(1) not in DAYS:
        raise ValueError(f"'{text}' is not a weekday and time such as 'fri 18:00'.")
    day, hour, minute = match.groups()
    return DAYS.index(day) * 1440 + int(hour) * 60 + int(minute)


def parse_windows(windows) -> list[tuple[int, int]]:
    """``[{"start": "fri 18:00", "end": "mon 06:00"}, ...]`` -> minute-of-week intervals
    ``(start, end)`` with ``end > start`` (a window across Sunday midnight gets ``end`` past
    one week). Raises ValueError for a malformed, empty or overlapping window."""
    if not isinstance(windows, list):
        raise ValueError("blackout_windows: must be a list of {start, end} objects.")
    spans = []
    for i, window in enumerate(windows):
        if not isinstance(window, dict) or set(window) != {"start", "end"}:
            raise ValueError(f"blackout_windows[{i}]: needs exactly 'start' and 'end'.")
        try:
            start, end = _minute_of_week(window["start"]), _minute_of_week(window["end"])
        except ValueError as exc:
            raise ValueError(f"blackout_windows[{i}]: {exc}") from None
        if start == end:
            raise ValueError(f"blackout_windows[{i}]: starts and ends at the same time.")
        spans.append((start, end if end > start else end + WEEK))
    covered = sorted(spans + [(s + WEEK, e + WEEK) for s, e in spans])
    for (_s1, e1), (s2, _e2) in zip(covered, covered[1:], strict=False):
        if s2 < e1:
            raise ValueError("blackout_windows: two windows overlap; merge them into one.")
    return spans


def in_blackout(windows, time_zone: str, when: datetime) -> dict | None:
    """The window that ``when`` (aware) falls in, in the environment's time zone, or None."""
    local = when.astimezone(zoneinfo.ZoneInfo(time_zone))
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    for window, (start, end) in zip(windows, parse_windows(windows), strict=True):
        if start <= minute < end or start <= minute + WEEK < end:
            return window
    return None


def check_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone: '{name}' is not an IANA time zone.") from None


def check_environment(env) -> None:
    """Raise ValueError if an environment's settings are malformed (admin form and service)."""
    from django.core.exceptions import ValidationError

    try:
        parse_windows(env.blackout_windows)
        check_time_zone(env.time_zone)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def approvals_floor_problem(path, criticality: str, floor: int) -> str | None:
    """Why a promotion path's approvals undercut the criticality floor, or None.

    ``path`` is ``[(name, required_approvals or None), ...]`` in path order. Only the last
    environment is held to ``floor`` (reaching it makes a change "deployed"; ``None`` means
    the system's rule): earlier ones may ask less (e.g. 1 for staging), because nothing
    reaches the end of the path without passing the final gate."""
    if not path:
        return None
    name, approvals = path[-1]
    if approvals is not None and approvals < floor:
        return (
            f"required_approvals: {name} is the end of the path, and a {criticality}-criticality "
            f"system needs at least {floor} approval(s) there; {approvals} is below that floor."
        )
    return None


def check_stages(stages) -> list[int]:
    """Declared rollout stages: percentages in 1..100, strictly increasing, ending at 100."""
    if not isinstance(stages, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) for p in stages
    ):
        raise ValueError("stages: a list of whole percentages such as [5, 25, 100].")
    if not stages:
        return []
    if any(not 1 <= p <= 100 for p in stages):
        raise ValueError("stages: every percentage must be between 1 and 100.")
    for a, b in zip(stages, stages[1:], strict=False):
        if b <= a:
            raise ValueError(f"stages: {b}% after {a}% does not increase.")
    if stages[-1] != 100:
        raise ValueError("stages: the last stage must be 100%.")
    return list(stages)


# --- three-way merge ----------------------------------------------------------------------

MARK_OURS, MARK_SEP, MARK_THEIRS = "<<<<<<< this change", "=======", ">>>>>>> live"


def _sync_regions(base, a, b):
    """Regions of ``base`` unchanged in both ``a`` and ``b``: (bs, be, as, ae, bs2, be2)."""
    ma = difflib.SequenceMatcher(None, base, a, autojunk=False).get_matching_blocks()
    mb = difflib.SequenceMatcher(None, base, b, autojunk=False).get_matching_blocks()
    out, i, j = [], 0, 0
    while i < len(ma) and j < len(mb):
        a_base, a_other, a_len = ma[i]
        b_base, b_other, b_len = mb[j]
        start = max(a_base, b_base)
        end = min(a_base + a_len, b_base + b_len)
        if start < end:
            out.append(
                (start, end, a_other + start - a_base, a_other + end - a_base,
                 b_other + start - b_base, b_other + end - b_base)
            )  # fmt: skip
        if a_base + a_len < b_base + b_len:
            i += 1
        else:
            j += 1
    out.append((len(base), len(base), len(a), len(a), len(b), len(b)))
    return out


def merge3(base: str, ours: str, theirs: str) -> tuple[str, int]:
    """Merge ``ours`` (this change) and ``theirs`` (live) made from ``base``, line by line.

    Returns ``(text, conflicts)``; each conflict is written between git-style markers so
    the engineer can resolve it by editing the text.
    """
    b, a, t = (x.splitlines(keepends=True) for x in (base, ours, theirs))
    out, conflicts = [], 0
    ib = ia = it = 0
    for bs, be, as_, ae, ts, te in _sync_regions(b, a, t):
        chunk_b, chunk_a, chunk_t = b[ib:bs], a[ia:as_], t[it:ts]
        if chunk_a == chunk_t or chunk_t == chunk_b:
            out += chunk_a
        elif chunk_a == chunk_b:
            out += chunk_t
        else:
            conflicts += 1
            out += [MARK_OURS + "\n", *_nl(chunk_a), MARK_SEP + "\n", *_nl(chunk_t)]
            out.append(MARK_THEIRS + "\n")
        out += a[as_:ae]
        ib, ia, it = be, ae, te
    return "".join(out), conflicts


def _nl(lines):
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines


def has_markers(text: str) -> bool:
    return any(
        line.startswith((MARK_OURS, MARK_THEIRS)) or line == MARK_SEP for line in text.splitlines()
    )
