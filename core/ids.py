"""Object ids as typed by people: in query strings, forms and URLs built by hand."""

from __future__ import annotations

import re

MAX_ID = 2**63 - 1  # the largest primary key the database holds
_ID_TEXT = re.compile(r"[0-9]{1,19}")


def parse_id(value) -> int | None:
    """An object id typed into a query string, or None when ``value`` cannot be one.

    Why not ``str.isdigit()`` then ``int()``: ``isdigit`` is true for "²" (which ``int``
    refuses) and for a 5,000-digit string (past ``int``'s conversion limit), and both became a
    500. Only ASCII digits from 1 to :data:`MAX_ID` are ids, so anything else is simply "no
    such object" for the caller.
    """
    text = value if isinstance(value, str) else str(value if value is not None else "")
    if not _ID_TEXT.fullmatch(text):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None
