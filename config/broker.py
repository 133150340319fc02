"""The embedded default broker: kombu's ``filesystem://`` transport, made crash-safe.

Registered under the ``filesystem`` alias (see :func:`register`), so ``filesystem://`` in
this project always means this transport. What it changes, and why, is in docs/broker.md:

- a message file appears whole or not at all (written under a hidden temporary name in the
  same folder, fsynced, then renamed), so a reader can never parse a half-written file;
- a consumer claims a file by renaming it into a folder of its own (one rename wins, so a
  message is delivered once) and deletes it only on ack, so a consumer that dies mid-task
  (even by SIGKILL) loses nothing: the next consumer moves a dead owner's claims back;
- a file that cannot be parsed (written by another tool) is retried while it may still be
  being written, then set aside in ``corrupt/`` with an error line, never a worker crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu import transport as kombu_transport
from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)

#: A file younger than this that does not parse may still be being written (by a writer that
#: is not atomic): it is put back and retried. Older ones are set aside as corrupt.
PARTIAL_GRACE_SECONDS = 10.0
#: How often a consumer looks for claims left behind by consumers that died.
RECOVER_INTERVAL_SECONDS = 5.0
_LOCK_NAME = ".owner.lock"


def _is_message(name: str, queue: str) -> bool:
    # "<time>_<uuid>.<queue>.msg"; hidden names (".<uuid>.tmp") are writes in progress.
    return not name.startswith(".") and name.partition(".")[2] == f"{queue}.msg"


class Channel(filesystem.Channel):
    """A filesystem channel whose writes are atomic and whose deliveries survive a crash."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claims: dict[str, str] = {}  # delivery tag -> claimed file
        self._no_ack_queues: set[str] = set()
        self._claim_dir: str | None = None
        self._claim_pid: int | None = None
        self._claim_lock_fd: int | None = None
        self._deferred: dict[str, float] = {}  # unparseable file name -> retry after
        self._next_recover = 0.0

    # --- folders -------------------------------------------------------------------------

    @cached_property
    def claimed_folder(self) -> str:
        default = os.path.join(os.path.dirname(os.path.abspath(self.data_folder_in)), "claimed")
        return self.transport_options.get("claimed_folder", default)

    @cached_property
    def corrupt_folder(self) -> str:
        default = os.path.join(os.path.dirname(os.path.abspath(self.data_folder_in)), "corrupt")
        return self.transport_options.get("corrupt_folder", default)

    @cached_property
    def fsync(self) -> bool:
        return bool(self.transport_options.get("fsync", True))

    def _own_claim_dir(self) -> str:
        """This channel's claim folder, created already locked (recoverers skip locked ones).

        It is built under a hidden name, locked, then renamed into place, so a recoverer never
        sees it unlocked while this channel is alive. The lock is released by the kernel when
        the process dies, however it dies.
        """
        if self._claim_dir is None or self._claim_pid != os.getpid():
            os.makedirs(self.claimed_folder, exist_ok=True)
            hidden = os.path.join(self.claimed_folder, f".{uuid.uuid4().hex}")
            os.mkdir(hidden)
            fd = os.open(os.path.join(hidden, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            final = os.path.join(self.claimed_folder, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
            os.rename(hidden, final)
            self._claim_dir, self._claim_lock_fd, self._claim_pid = final, fd, os.getpid()
        return self._claim_dir

    # --- publish -------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        """Write the message under a hidden name, fsync, then rename it into view."""
        folder = self.data_folder_out
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        temp = os.path.join(folder, f".{uuid.uuid4().hex}.tmp")
        data = str_to_bytes(dumps(payload))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, os.path.join(folder, name))
            if self.fsync:  # the rename itself survives a power cut only once the folder is
                dir_fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise ChannelError(f"Cannot add a message to {folder!r}: {exc}") from exc

    # --- consume -------------------------------------------------------------------------

    def _get(self, queue):
        """Claim the oldest whole message of ``queue`` by renaming it into our claim folder."""
        now = time.monotonic()
        if now >= self._next_recover:
            self._next_recover = now + RECOVER_INTERVAL_SECONDS
            self.recover_orphaned_claims()
        names = sorted(n for n in os.listdir(self.data_folder_in) if _is_message(n, queue))
        for name in names:
            if self._deferred.get(name, 0.0) > now:
                continue
            source = os.path.join(self.data_folder_in, name)
            claimed = os.path.join(self._own_claim_dir(), name)
            try:
                os.rename(source, claimed)
            except OSError:
                continue  # another consumer claimed it first
            try:
                with open(claimed, "rb") as f:
                    payload = loads(bytes_to_str(f.read()))
                tag = payload["properties"]["delivery_tag"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._set_aside(name, claimed, exc)
                continue
            self._deferred.pop(name, None)
            if queue in self._no_ack_queues:
                with contextlib.suppress(OSError):
                    os.unlink(claimed)
            else:
                self._claims[tag] = claimed
            return payload
        raise Empty()

    def _set_aside(self, name: str, claimed: str, exc: Exception) -> None:
        """An unparseable file: retry it while it may still be written, then quarantine it."""
        try:
            age = time.time() - os.stat(claimed).st_mtime
        except OSError:
            return
        if age < PARTIAL_GRACE_SECONDS:
            self._deferred[name] = time.monotonic() + 0.5
            with contextlib.suppress(OSError):
                os.rename(claimed, os.path.join(self.data_folder_in, name))
            return
        os.makedirs(self.corrupt_folder, exist_ok=True)
        with contextlib.suppress(OSError):
            os.rename(claimed, os.path.join(self.corrupt_folder, name))
        self._deferred.pop(name, None)
        logger.error("Broker: set aside the unreadable message file %s (%s)", name, exc)

    def _release(self, delivery_tag, *, requeue: bool) -> bool:
        """Drop (ack) or put back (requeue) the claimed file of a delivery."""
        claimed = self._claims.pop(delivery_tag, None)
        if claimed is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            if requeue:
                os.rename(claimed, os.path.join(self.data_folder_in, os.path.basename(claimed)))
            else:
                os.unlink(claimed)
        return True

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        # No ack will come for these (Celery's remote-control queue): drop on delivery.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._release(message.delivery_tag, requeue=False)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self._release(delivery_tag, requeue=False)

    def basic_reject(self, delivery_tag, requeue=False):
        if requeue and delivery_tag in self._claims:
            # Put the very file back (its name keeps its place in line) instead of a copy.
            self.qos.ack(delivery_tag)
            self._release(delivery_tag, requeue=True)
            return
        super().basic_reject(delivery_tag, requeue)
        self._release(delivery_tag, requeue=False)

    def _restore(self, message):
        # Unacked at shutdown (QoS.restore_unacked): move the claimed file back, no copy.
        if not self._release(message.delivery_tag, requeue=True):
            super()._restore(message)

    def close(self):
        super().close()  # restores unacked deliveries through _restore
        if self._claim_dir is not None and self._claim_pid == os.getpid():
            if not self._claims:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._claim_dir, _LOCK_NAME))
                    os.rmdir(self._claim_dir)
            with contextlib.suppress(OSError):
                os.close(self._claim_lock_fd)
            self._claim_dir = self._claim_lock_fd = None

    def recover_orphaned_claims(self) -> int:
        """Put back the claims of consumers that died (their folder's lock is free)."""
        try:
            owners = os.listdir(self.claimed_folder)
        except FileNotFoundError:
            return 0
        restored = 0
        for owner in owners:
            folder = os.path.join(self.claimed_folder, owner)
            if owner.startswith(".") or folder == self._claim_dir:
                continue
            try:
                fd = os.open(os.path.join(folder, _LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue  # removed meanwhile by its owner or another recoverer
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                for name in os.listdir(folder):
                    if name.endswith(".msg"):
                        with contextlib.suppress(OSError):
                            os.rename(os.path.join(folder, name),
                                      os.path.join(self.data_folder_in, name))  # fmt: skip
                            restored += 1
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, _LOCK_NAME))
                    os.rmdir(folder)
            finally:
                os.close(fd)
        if restored:
            logger.warning("Broker: put back %d message(s) claimed by a dead consumer", restored)
        return restored

    # --- exchange tables (fanout, Celery's remote control) -----------------------------

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                raw = f.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        # An empty file is one being created by _queue_bind right now: no bindings yet.
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))] if raw else []

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self._update_table(exchange, filesystem.exchange_queue_t(routing_key or "",
                                                                 pattern or "", queue or ""),
                           add=True)  # fmt: skip

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, entry, add=False)

    def _update_table(self, exchange, entry, *, add: bool) -> None:
        """Read-modify-write of an exchange table under one exclusive lock (kombu truncated
        the file before locking it, so a concurrent reader could see it empty)."""
        file = self._exchange_file(exchange)
        Path(self.control_folder).mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "r+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.seek(0)
                raw = f.read()
                try:
                    rows = json.loads(raw) if raw else []
                except ValueError:
                    rows = []  # a table torn by an older writer: rebuilt by the next binds
                table = [filesystem.exchange_queue_t(*q) for q in rows]
                if add and entry not in table:
                    table.insert(0, entry)
                elif not add and entry in table:
                    table.remove(entry)
                else:
                    return
                f.seek(0)
                f.truncate()
                f.write(str_to_bytes(dumps(table)))
                f.flush()
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel` (atomic, crash-safe)."""

    Channel = Channel
    global_state = virtual.BrokerState()

    @property
    def default_connection_params(self):
        # A folder has no host: without this kombu warns "No hostname was supplied" on every
        # connection (each web request that sends a wake-up printed it).
        return {"port": self.default_port, "hostname": None}


def register() -> None:
    """Make ``filesystem://`` resolve to this transport in this process."""
    TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"
    # kombu caches what a name resolved to; forget the stock class if it was looked up first.
    kombu_transport._transport_cache.pop("filesystem", None)
