"""The Ed25519 keys that sign attestations, and the set of keys trusted to verify them.

Where the key comes from (settings, in order):

* ``ATTESTATION_SIGNING_KEY``: the private key itself, as PKCS8 PEM text (literal ``\\n``
  escapes allowed, since env vars are often single-line) or as base64 of the 32 raw key bytes;
  the production choice, injected from a secret store.
* ``ATTESTATION_SIGNING_KEY_FILE``: a PEM file; ``ensure_dev_key`` creates one for a newcomer's
  laptop so ``seed_demo`` and the run command work without setup, and say that they did it.

Every key is named by a key id derived from its public key, which goes into each DSSE
signature. Verification trusts the current signer plus every public key PEM in
``ATTESTATION_PUBLIC_KEYS_DIR``, so after a rotation the old attestations still verify as long
as the old public key is kept there.

The functions take explicit arguments that override settings, so the module works (and is
tested) without a configured Django project.
"""

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core import crypto, files

__all__ = [
    "Signer",
    "SigningKeyError",
    "ensure_dev_key",
    "key_id_for",
    "load_signer",
    "public_key_pem",
    "trusted_public_keys",
]

logger = logging.getLogger(__name__)

KEY_ID_PREFIX = "ed25519:"


class SigningKeyError(ValueError):
    """No usable signing key: missing, unreadable, or not Ed25519."""


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: ``ed25519:`` + 16 hex of SHA-256(raw key).

    Derived rather than configured, so the same key has the same id on every machine and a
    verifier can recompute it from the public key file alone.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form ``ATTESTATION_PUBLIC_KEYS_DIR`` expects."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Signer:
    """A private key with its key id; what ``dsse.sign_envelope`` needs."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> "Signer":
        return cls(key_id=key_id_for(private_key.public_key()), private_key=private_key)

    @classmethod
    def generate(cls) -> "Signer":
        """A fresh in-memory key, for tests and throwaway use."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def _settings():
    from django.conf import settings

    return settings


def _private_key_from_text(text: str, source: str) -> Ed25519PrivateKey:
    try:
        return crypto.ed25519_private_key(text, source, signs="attestations")
    except crypto.UnreadableKey as exc:
        raise SigningKeyError(str(exc)) from None


def load_signer(*, pem: str | None = None, path: str | os.PathLike | None = None) -> Signer:
    """The signer for new attestations.

    With no arguments: ``settings.ATTESTATION_SIGNING_KEY`` when set, otherwise the file
    ``settings.ATTESTATION_SIGNING_KEY_FILE``. Raises ``SigningKeyError`` when neither gives a
    key; it never generates one, so a misconfigured production worker fails loudly instead of
    signing with a key nobody trusts.
    """
    if pem is None and path is None:
        settings = _settings()
        pem = getattr(settings, "ATTESTATION_SIGNING_KEY", "") or None
        path = None if pem else getattr(settings, "ATTESTATION_SIGNING_KEY_FILE", "") or None
    if pem:
        return Signer.from_private_key(_private_key_from_text(pem, "ATTESTATION_SIGNING_KEY"))
    if not path:
        raise SigningKeyError("no attestation signing key is configured")
    key_path = Path(path)
    try:
        text = key_path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(
            f"cannot read the signing key at {key_path} ({exc.__class__.__name__}); "
            "set ATTESTATION_SIGNING_KEY(_FILE) or run seed_demo to generate a development key"
        ) from None
    return Signer.from_private_key(_private_key_from_text(text, str(key_path)))


def ensure_dev_key(path: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Create a development signing key at ``path`` unless one exists; return (path, created).

    ``path`` defaults to ``settings.ATTESTATION_SIGNING_KEY_FILE``. When it is not given and
    ``settings.ATTESTATION_SIGNING_KEY`` is set, a key is already configured and nothing is
    written (``created`` is False). The PEM is unencrypted PKCS8 with mode 0600 in a 0700
    directory. It is written to a temporary file and hard-linked into place, so two processes
    starting at once (web and worker) never overwrite each other's key or read half a file.
    """
    if path is None:
        settings = _settings()
        path = settings.ATTESTATION_SIGNING_KEY_FILE
        if getattr(settings, "ATTESTATION_SIGNING_KEY", ""):
            return Path(path), False
    key_path = Path(path)
    if key_path.exists():
        return key_path, False
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if not files.write_once(key_path, pem):
        return key_path, False
    logger.warning("generated a development attestation signing key at %s", key_path)
    return key_path, True


def _load_public_key_file(path: Path) -> Ed25519PublicKey | None:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("ignoring unreadable public key %s: %s", path, exc)
        return None
    if not isinstance(key, Ed25519PublicKey):
        logger.warning("ignoring non-Ed25519 public key %s", path)
        return None
    return key


def trusted_public_keys(
    *,
    signer: Signer | None = None,
    public_keys_dir: str | os.PathLike | None = None,
) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key for every key whose signatures verification accepts.

    The current signer (``load_signer()`` unless given; skipped when none is configured, as on
    an auditor's machine holding public keys only) plus each ``*.pem`` public key in
    ``public_keys_dir`` (default ``settings.ATTESTATION_PUBLIC_KEYS_DIR``). Unreadable or
    non-Ed25519 files are logged and skipped: one bad file must not stop every verification.
    Passing either argument leaves settings untouched (the other one then contributes nothing).
    """
    keys: dict[str, Ed25519PublicKey] = {}
    if signer is None and public_keys_dir is None:
        public_keys_dir = getattr(_settings(), "ATTESTATION_PUBLIC_KEYS_DIR", "") or None
        try:
            signer = load_signer()
        except SigningKeyError:
            signer = None
    if signer is not None:
        keys[signer.key_id] = signer.public_key
    if public_keys_dir:
        directory = Path(public_keys_dir)
        for pem_path in sorted(directory.glob("*.pem")) if directory.is_dir() else []:
            key = _load_public_key_file(pem_path)
            if key is not None:
                keys[key_id_for(key)] = key
    return keys
