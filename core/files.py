"""Writing a file once: atomically, and never over one that exists.

Used for what must not change once written and may be created by two processes at once: the
development signing key, the certificate authority's files and the signed audit checkpoints.
(The broker's message files, ``config/broker.py``, are a different write: uniquely named,
always published, fsync optional; they keep their own ``os.replace``.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_once(path: str | os.PathLike, data: bytes, *, dir_mode: int = 0o700) -> bool:
    """Create ``path`` holding ``data`` (mode 0600) unless it exists; return whether it did.

    A temporary file in the same directory is fsynced and hard-linked into place, so readers
    see the whole file or none and ``link`` fails rather than overwrite: of two processes
    writing at once, the loser keeps the winner's file. Volumes that refuse hard links get an
    exclusive create instead, which still never overwrites. Missing directories are created
    with ``dir_mode``.
    """
    path = Path(path)
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        except OSError:
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        os.unlink(tmp_name)
    return True
