"""Signed checkpoints that anchor the audit chain outside its own table.

A checkpoint is a C2SP signed note (https://c2sp.org/tlog-checkpoint) over an RFC 9162 Merkle
tree whose leaves are the audit events' chain hashes, in id order. Checkpoints are written to
``AUDIT_CHECKPOINT_DIR`` (atomically, never overwritten) with the leaf list since the previous
one, and copied into ``AuditCheckpoint``. ``verify_anchored`` checks the table against the
newest checkpoint found in the directory. The design, and what each piece does and does not
protect against, is in docs/AUDIT.md.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from core import crypto, files

from . import audit
from .models import AuditCheckpoint, AuditEvent

logger = logging.getLogger(__name__)

EMPTY_ROOT = hashlib.sha256(b"").digest()
SIGNATURE_PREFIX = "\u2014 "  # "— ", as the signed-note spec writes it
CHECKPOINT_SUFFIX = ".checkpoint"
LEAVES_DIR = "leaves"
_FILE_RE = re.compile(r"(\d{12})-(\d{8}T\d{12}Z)\.checkpoint")
_LEAVES_RE = re.compile(r"(\d{12})-(\d{12})\.txt")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointError(Exception):
    """A checkpoint cannot be published (no key, or the chain contradicts the last one)."""


# --- Merkle tree (RFC 9162 section 2.1) ------------------------------------------------------


def leaf_hash(event_hash: str) -> bytes:
    """The leaf for one event: SHA-256(0x00 || the event's 32-byte chain hash)."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(event_hash)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleAccumulator:
    """The root of a growing tree in O(log n) memory: a stack of perfect subtrees.

    Folding the stack right to left gives RFC 9162's MTH, whose left subtree is always the
    largest power of two smaller than n.
    """

    def __init__(self):
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def add(self, leaf: bytes) -> None:
        self._stack.append((1, leaf))
        self.size += 1
        while len(self._stack) > 1 and self._stack[-1][0] == self._stack[-2][0]:
            (width, right), (_, left) = self._stack.pop(), self._stack.pop()
            self._stack.append((width * 2, node_hash(left, right)))

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        root = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            root = node_hash(left, root)
        return root


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    acc = MerkleAccumulator()
    for leaf in leaves:
        acc.add(leaf)
    return acc.root()


class MerkleTree:
    """Every level of a tree, 32 bytes per node in one bytearray per level, for proofs.

    An odd node at the end of a level moves up unchanged, which yields exactly RFC 9162's
    tree. About 64 bytes per leaf: a million events take ~64 MB while a proof set is built.
    """

    def __init__(self, leaves: Iterable[bytes]):
        level = bytearray()
        for leaf in leaves:
            level += leaf
        self.levels = [level]
        while len(level) > 32:
            upper = bytearray()
            for offset in range(0, len(level) - 32, 64):
                upper += node_hash(level[offset : offset + 32], level[offset + 32 : offset + 64])
            if (len(level) // 32) % 2:
                upper += level[-32:]
            self.levels.append(upper)
            level = upper

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def root(self) -> bytes:
        return bytes(self.levels[-1]) if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf ``index``, bottom up (RFC 9162 section 2.1.3.1)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling * 32 < len(level):
                proof.append(bytes(level[sibling * 32 : sibling * 32 + 32]))
            index >>= 1
        return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` put ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --- keys and the signed note ----------------------------------------------------------------


def _private_key_from_text(text: str, source: str) -> Ed25519PrivateKey:
    try:
        return crypto.ed25519_private_key(text, source, signs="checkpoints")
    except crypto.UnreadableKey as exc:
        raise CheckpointError(str(exc)) from None


def signing_key() -> Ed25519PrivateKey:
    """The checkpoint key: ``AUDIT_CHECKPOINT_SIGNING_KEY(_FILE)``, else the attestation key
    (``ATTESTATION_SIGNING_KEY(_FILE)``), so one published public key checks both. Read from
    settings here rather than through ``attestations.keys``: the audit log sits below the
    attestation app and must not import it."""
    for text_setting, file_setting in (
        ("AUDIT_CHECKPOINT_SIGNING_KEY", "AUDIT_CHECKPOINT_SIGNING_KEY_FILE"),
        ("ATTESTATION_SIGNING_KEY", "ATTESTATION_SIGNING_KEY_FILE"),
    ):
        text = getattr(settings, text_setting, "")
        if text:
            return _private_key_from_text(text, text_setting)
        path = getattr(settings, file_setting, "")
        if path:
            try:
                return _private_key_from_text(Path(path).read_text("ascii"), str(path))
            except OSError as exc:
                raise CheckpointError(f"cannot read the checkpoint key at {path}: {exc}") from None
    raise CheckpointError("no checkpoint signing key is configured")


def trusted_keys() -> list[Ed25519PublicKey]:
    """The current checkpoint key plus every ``*.pem`` public key in
    ``ATTESTATION_PUBLIC_KEYS_DIR`` (so checkpoints survive a key rotation)."""
    keys = []
    with suppress(CheckpointError):
        keys.append(signing_key().public_key())
    directory = Path(getattr(settings, "ATTESTATION_PUBLIC_KEYS_DIR", "") or "/nonexistent")
    for pem in sorted(directory.glob("*.pem")) if directory.is_dir() else []:
        try:
            key = serialization.load_pem_public_key(pem.read_bytes())
        except (OSError, ValueError, TypeError):
            continue
        if isinstance(key, Ed25519PublicKey):
            keys.append(key)
    return keys


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def note_key_hash(name: str, key: Ed25519PublicKey) -> bytes:
    """The signed-note key hash: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + raw_public_key(key)).digest()[:4]


def vkey(name: str, key: Ed25519PublicKey) -> str:
    """The signed-note verifier key string, ``name+hash+base64(0x01 || key)``."""
    encoded = base64.b64encode(b"\x01" + raw_public_key(key)).decode()
    return f"{name}+{note_key_hash(name, key).hex()}+{encoded}"


@dataclass(frozen=True)
class Checkpoint:
    """One parsed checkpoint. ``body`` is the signed text, ``note`` the whole file."""

    origin: str
    size: int
    root: bytes
    head_id: int | None
    head_hash: str
    time: str
    body: str
    note: str
    name: str = ""  # the file name in the store, when read from it
    signatures: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def describe(self) -> str:
        return f"checkpoint {self.name or '(unsaved)'} (size {self.size}, {self.time})"

    def as_dict(self) -> dict:
        """What an attestation embeds: the note verbatim (it verifies on its own) and its
        parsed fields, for readers who do not parse notes."""
        return {
            "format": "c2sp.org/tlog-checkpoint",
            "origin": self.origin,
            "tree_size": self.size,
            "root_hash": base64.b64encode(self.root).decode(),
            "head": {"id": self.head_id, "hash": self.head_hash},
            "time": self.time,
            "note": self.note,
        }


def format_body(
    origin: str, size: int, root: bytes, head_id: int | None, head_hash: str, time: str
) -> str:
    """Origin, size, base64 root, then two extension lines (the chain head and the time),
    which generic checkpoint parsers ignore and our verifiers read."""
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise CheckpointError("AUDIT_CHECKPOINT_ORIGIN must be non-empty, without spaces or '+'")
    head = f"head {head_id} {head_hash}" if head_id is not None else "head none"
    root_b64 = base64.b64encode(root).decode()
    return f"{origin}\n{size}\n{root_b64}\n{head}\ntime {time}\n"


def sign_body(body: str, key: Ed25519PrivateKey, name: str) -> str:
    signature = key.sign(body.encode())
    line = base64.b64encode(note_key_hash(name, key.public_key()) + signature).decode()
    return f"{body}\n{SIGNATURE_PREFIX}{name} {line}\n"


def parse_note(text: str, name: str = "") -> Checkpoint:
    """Parse a signed checkpoint note; ``ValueError`` says what is malformed."""
    body, sep, sig_block = text.partition("\n\n")
    if not sep:
        raise ValueError("no blank line between the text and the signatures")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3 or any(not line for line in lines):
        raise ValueError("the text needs origin, size and root lines")
    origin, size_text, root_b64 = lines[:3]
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise ValueError(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except binascii.Error:
        raise ValueError("the root hash is not base64") from None
    if len(root) != 32:
        raise ValueError("the root hash is not 32 bytes")
    head_id, head_hash, time = None, "", ""
    for line in lines[3:]:
        key, _, value = line.partition(" ")
        if key == "head" and value != "none":
            id_text, _, head_hash = value.partition(" ")
            if not id_text.isdigit() or not _HEX64.fullmatch(head_hash):
                raise ValueError("the head line is malformed")
            head_id = int(id_text)
        elif key == "time":
            time = value
    signatures = []
    for line in sig_block.split("\n"):
        if not line:
            continue
        if not line.startswith(SIGNATURE_PREFIX):
            raise ValueError("a signature line does not start with an em dash")
        signer_name, _, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise ValueError("a signature is not base64") from None
        signatures.append((signer_name, raw))
    return Checkpoint(
        origin=origin,
        size=int(size_text),
        root=root,
        head_id=head_id,
        head_hash=head_hash,
        time=time,
        body=body,
        note=text,
        name=name,
        signatures=tuple(signatures),
    )


def signature_valid(checkpoint: Checkpoint, keys: Iterable[Ed25519PublicKey]) -> bool:
    """Whether a trusted key signed the checkpoint under its own origin as key name."""
    for key in keys:
        expected = note_key_hash(checkpoint.origin, key)
        for signer_name, raw in checkpoint.signatures:
            if signer_name != checkpoint.origin or raw[:4] != expected or len(raw) != 68:
                continue
            try:
                key.verify(raw[4:], checkpoint.body.encode())
                return True
            except InvalidSignature:
                continue
    return False


# --- the store -------------------------------------------------------------------------------


def store_dir() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


@contextmanager
def _publish_lock():
    """One publisher at a time per store (beat and a deploy may fire together)."""
    directory = store_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stored_checkpoints(*, keys=None) -> tuple[list[Checkpoint], list[str]]:
    """Every well-formed, validly signed checkpoint in the directory (oldest first), and a
    sentence for each file that is not one."""
    directory = store_dir()
    keys = trusted_keys() if keys is None else keys
    found, problems = [], []
    for path in sorted(directory.glob(f"*{CHECKPOINT_SUFFIX}")) if directory.is_dir() else []:
        try:
            checkpoint = parse_note(path.read_text("utf-8"), name=path.name)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{path.name} is not a readable checkpoint ({exc})")
            continue
        if not signature_valid(checkpoint, keys):
            problems.append(f"{path.name} is not signed by a trusted checkpoint key")
            continue
        if not _FILE_RE.fullmatch(path.name) or int(path.name[:12]) != checkpoint.size:
            problems.append(
                f"{path.name} is misnamed: it holds a checkpoint of size {checkpoint.size}"
            )
            continue
        found.append(checkpoint)
    found.sort(key=lambda c: (c.size, c.time))
    return found, problems


def latest_checkpoint() -> Checkpoint | None:
    """The newest validly signed checkpoint in the directory (largest tree, then latest).

    File names sort by size, then time, so this reads from the newest name down and stops at
    the first file that parses and verifies: cheap however many checkpoints the store holds.
    """
    directory = store_dir()
    if not directory.is_dir():
        return None
    keys = trusted_keys()
    names = sorted((p.name for p in directory.glob(f"*{CHECKPOINT_SUFFIX}")), reverse=True)
    for name in names:
        if not _FILE_RE.fullmatch(name):
            continue
        try:
            checkpoint = parse_note((directory / name).read_text("utf-8"), name=name)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if checkpoint.size == int(name[:12]) and signature_valid(checkpoint, keys):
            return checkpoint
    return None


def stored_leaves(limit: int) -> Iterator[tuple[int, int, str]]:
    """(position, event id, event hash) from the leaf files, in order, up to ``limit``.

    Stops at the first gap in the files or the first malformed line (the caller then falls
    back to the Merkle root, which a leaf file cannot forge); where files overlap, the first
    one read is used.
    """
    directory = store_dir() / LEAVES_DIR
    ranges = []
    for path in directory.glob("*.txt") if directory.is_dir() else []:
        match = _LEAVES_RE.fullmatch(path.name)
        if match:
            ranges.append((int(match[1]), int(match[2]), path))
    position = 0
    for start, end, path in sorted(ranges):
        if position >= limit or start > position:
            return
        if end <= position:
            continue
        with open(path, encoding="ascii", errors="replace") as handle:
            for offset, line in enumerate(handle):
                index = start + offset
                if index < position:
                    continue
                if index >= min(end, limit):
                    break
                id_text, _, event_hash = line.strip().partition(" ")
                if not id_text.isascii() or not id_text.isdigit():
                    return
                yield index, int(id_text), event_hash
                position = index + 1


# --- checking the table against the newest checkpoint ------------------------------------------


@dataclass
class AnchorReport:
    """What ``verify_anchored`` found. ``ok`` only if the chain verifies on its own and
    agrees with the newest checkpoint (when one exists)."""

    events: int = 0
    head_id: int | None = None
    head_hash: str = ""
    chain_problem: audit.ChainProblem | None = None
    checkpoint: Checkpoint | None = None
    problem: str = ""
    first_bad_event: int | None = None
    warnings: list[str] = field(default_factory=list)
    store_problems: list[str] = field(default_factory=list)
    root: bytes = EMPTY_ROOT
    new_leaves: list[tuple[int, str]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.chain_problem is None and not self.problem and not self.store_problems

    @property
    def reason(self) -> str:
        """The first problem in words, naming the event and the checkpoint."""
        if self.chain_problem is not None:
            broken = f"event #{self.chain_problem.event_id}: {self.chain_problem.reason}"
            return f"{self.problem}; and {broken}" if self.problem else broken
        if self.problem:
            return self.problem
        return "; ".join(self.store_problems)


def _leaf(event_hash: str) -> bytes:
    try:
        return leaf_hash(event_hash)
    except (ValueError, TypeError):  # a tampered, non-hex hash still gets a (wrong) leaf
        return hashlib.sha256(b"\x00" + str(event_hash).encode()).digest()


def verify_anchored(rows: Iterable[tuple] | None = None, *, collect_from: int | None = None):
    """Walk the chain once: check its hashes, compare each event with the leaf the store
    recorded for its position, and rebuild the Merkle root at the newest checkpoint's size.

    Returns an ``AnchorReport`` naming the first missing or changed event and the checkpoint
    it contradicts. With ``collect_from``, also keeps the (id, hash) of the events from that
    position on (the next leaf file) and the root over every event (the next checkpoint).
    """
    report = AnchorReport()
    checkpoints, file_problems = stored_checkpoints()
    report.store_problems.extend(file_problems)
    cp = checkpoints[-1] if checkpoints else None
    report.checkpoint = cp
    db_newest = AuditCheckpoint.objects.order_by("-tree_size", "-published_at").first()
    if db_newest is not None and (cp is None or db_newest.tree_size > cp.size):
        have = "no valid checkpoint" if cp is None else f"only up to size {cp.size}"
        report.problem = (
            f"the database records checkpoint {db_newest.file_name} (size "
            f"{db_newest.tree_size}) but the checkpoint directory has {have}: "
            "checkpoints were removed from the store"
        )
    size = cp.size if cp is not None else 0
    leaves = stored_leaves(size)
    acc = MerkleAccumulator()
    state = {"cp_root": EMPTY_ROOT if size == 0 else None, "leaves_short": False}

    def note_difference(message: str, event_id: int | None) -> None:
        if not report.problem:
            report.problem = message
            report.first_bad_event = event_id

    def tap(source):
        for position, row in enumerate(source):
            event_id, event_hash = row[0], row[-1]
            acc.add(_leaf(event_hash))
            if position < size:
                stored = next(leaves, None)
                if stored is None:
                    state["leaves_short"] = True
                elif (stored[1], stored[2]) != (event_id, event_hash):
                    _, stored_id, _ = stored
                    if event_id == stored_id:
                        what = f"event #{event_id} was changed"
                    elif event_id > stored_id:
                        what = f"event #{stored_id} is missing"
                    else:
                        what = f"event #{event_id} was inserted before #{stored_id}"
                    note_difference(
                        f"{what}: it differs from what {cp.describe()} recorded at position "
                        f"{position + 1}",
                        stored_id if event_id > stored_id else event_id,
                    )
                if position == size - 1:
                    state["cp_root"] = acc.root()
            if collect_from is not None and position >= collect_from:
                report.new_leaves.append((event_id, event_hash))
            report.head_id, report.head_hash = event_id, event_hash
            yield row

    rows = audit.iter_rows() if rows is None else rows
    count, report.chain_problem = audit.verify_rows(tap(rows))
    report.events = acc.size
    report.root = acc.root()
    if report.chain_problem is not None:
        report.events = count  # the events before the broken one
        # An earlier difference from the checkpoint's leaves (a re-chained rewrite before
        # the break) is the first bad event; otherwise the break is.
        if report.first_bad_event is None:
            report.first_bad_event = report.chain_problem.event_id
        return report
    if cp is None:
        return report
    if acc.size < size:
        missing = next(leaves, None)
        missing_id = missing[1] if missing is not None else cp.head_id
        where = f"event #{missing_id}" if missing is not None else f"events up to #{cp.head_id}"
        note_difference(
            f"{where} is missing: the table has {acc.size} events but {cp.describe()} "
            f"committed to {size}, ending at event #{cp.head_id} {cp.head_hash[:16]}…",
            missing_id,
        )
    elif state["cp_root"] != cp.root:
        note_difference(
            f"the first {size} events do not hash to the root of {cp.describe()}: an event "
            "was changed or replaced"
            + (
                " (its leaf file is missing, so it cannot be named)"
                if state["leaves_short"]
                else ""
            ),
            None,
        )
    if state["leaves_short"] and not report.problem:
        report.warnings.append(f"the leaf files cover fewer than the {size} events of {cp.name}")
    return report


def anchor_holds() -> tuple[bool, str]:
    """A cheap check for every verification request: the newest checkpoint's head event is
    still in the table with the hash it was signed with. Deleting the tail, emptying the
    table or re-chaining a rewrite all remove or change that event. (Only ``verify_audit``'s
    full walk checks every event; this costs one directory read and one indexed lookup.)"""
    cp = latest_checkpoint()
    if cp is None or cp.size == 0 or cp.head_id is None:
        return True, "no checkpoint to hold the chain to yet"
    if audit.contains(cp.head_id, cp.head_hash):
        return True, f"{cp.describe()} still matches its head event #{cp.head_id}"
    return False, (
        f"event #{cp.head_id}, the head of {cp.describe()}, is no longer in the audit log "
        "with its signed hash: the log was truncated or rewritten"
    )


# --- publishing --------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _covered_leaves() -> int:
    """How many leading positions the leaf files cover without a gap."""
    covered = 0
    directory = store_dir() / LEAVES_DIR
    ranges = (
        sorted(
            (int(m[1]), int(m[2]))
            for m in (_LEAVES_RE.fullmatch(p.name) for p in directory.glob("*.txt"))
            if m
        )
        if directory.is_dir()
        else []
    )
    for start, end in ranges:
        if start > covered:
            break
        covered = max(covered, end)
    return covered


def publish_checkpoint(*, reason: str = "schedule") -> Checkpoint:
    """Sign and store a checkpoint of the whole chain as it is now.

    Refuses (``CheckpointError``, logged) when the chain is broken or contradicts the newest
    stored checkpoint: publishing then would bless the tampering. Writes the leaf file for
    the events since the covered prefix, then the checkpoint file, then the database copy.
    """
    key = signing_key()
    try:
        return _publish(key, settings.AUDIT_CHECKPOINT_ORIGIN, reason)
    except OSError as exc:  # an unwritable or missing store: say where, not a traceback
        logger.error("audit checkpoint not stored: %s", exc)
        raise CheckpointError(
            f"cannot write to the checkpoint store {store_dir()}: {exc}"
        ) from None


def _publish(key: Ed25519PrivateKey, origin: str, reason: str) -> Checkpoint:
    with _publish_lock():
        covered = _covered_leaves()
        # One consistent read: iter_rows walks a single server-side cursor on PostgreSQL and
        # a single SELECT on SQLite (a WAL snapshot), without holding SQLite's write lock.
        report = verify_anchored(collect_from=covered)
        if not report.ok:
            logger.error("audit checkpoint refused: %s", report.reason)
            raise CheckpointError(f"refusing to publish a checkpoint: {report.reason}")
        size = report.events
        if size > covered:
            lines = "".join(
                f"{event_id} {event_hash}\n" for event_id, event_hash in report.new_leaves
            )
            leaf_path = store_dir() / LEAVES_DIR / f"{covered:012d}-{size:012d}.txt"
            if not files.write_once(leaf_path, lines.encode("ascii"), dir_mode=0o777):
                raise CheckpointError(f"{leaf_path.name} already exists")
        now = timezone.now()
        time = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
        body = format_body(origin, size, report.root, report.head_id, report.head_hash, time)
        note = sign_body(body, key, origin)
        name = f"{size:012d}-{_stamp(now)}{CHECKPOINT_SUFFIX}"
        if not files.write_once(store_dir() / name, note.encode("utf-8"), dir_mode=0o777):
            raise CheckpointError(f"{name} already exists; not overwriting it")
        AuditCheckpoint.objects.create(
            tree_size=size,
            root_hash=report.root.hex(),
            head_event_id=report.head_id,
            head_hash=report.head_hash,
            published_at=now,
            reason=reason[:32],
            file_name=name,
            note=note,
        )
    return parse_note(note, name=name)


def enqueue_publish(reason: str) -> bool:
    """Ask a worker to publish a checkpoint (after a deployment commits). A broker error is
    logged, never raised: beat publishes on schedule anyway."""
    from .tasks import publish_audit_checkpoint

    try:
        publish_audit_checkpoint.apply_async(kwargs={"reason": reason}, retry=False)
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.exception("Could not enqueue an audit checkpoint")
        return False
    return True


# --- proofs for events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    event_id: int
    index: int
    tree_size: int
    path: tuple[bytes, ...]

    def as_dict(self) -> dict:
        return {
            "leaf_index": self.index,
            "tree_size": self.tree_size,
            "hashes": [base64.b64encode(h).decode() for h in self.path],
        }


def inclusion_proofs(event_ids: Iterable[int], checkpoint: Checkpoint) -> dict[int, InclusionProof]:
    """Proofs that each event is in ``checkpoint``'s tree, from one streamed pass over the
    first ``checkpoint.size`` events and one tree build. Events after the checkpoint (or
    missing from the table) get none; a table that no longer matches the checkpoint raises
    ``CheckpointError`` rather than hand out proofs against a root it does not have."""
    wanted = set(event_ids)
    positions: dict[int, int] = {}

    def leaves():
        qs = AuditEvent.objects.order_by("id").values_list("id", "hash")
        for index, (event_id, event_hash) in enumerate(qs[: checkpoint.size].iterator(20_000)):
            if event_id in wanted:
                positions[event_id] = index
            yield _leaf(event_hash)

    tree = MerkleTree(leaves() if checkpoint.size else ())
    if tree.size != checkpoint.size or tree.root() != checkpoint.root:
        raise CheckpointError(f"the audit table no longer matches {checkpoint.describe()}")
    return {
        event_id: InclusionProof(event_id, index, tree.size, tuple(tree.inclusion_proof(index)))
        for event_id, index in positions.items()
    }


def inclusion_proof(event: AuditEvent, checkpoint: Checkpoint | None = None) -> InclusionProof:
    """The proof for one event against ``checkpoint`` (default: the newest). ``LookupError``
    when the event is newer than the checkpoint."""
    checkpoint = checkpoint or latest_checkpoint()
    if checkpoint is None:
        raise LookupError("no checkpoint has been published yet")
    proof = inclusion_proofs([event.pk], checkpoint).get(event.pk)
    if proof is None:
        raise LookupError(f"event #{event.pk} is not in {checkpoint.describe()}")
    return proof
