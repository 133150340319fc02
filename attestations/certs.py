"""The deployment's attestation CA and the certificate of the PAdES signing key.

Design notes: docs/pades.md. In short:

* The DSSE envelope is signed with the Ed25519 signing key (``attestations.keys``).
* The PAdES signature over the whole PDF is made with a P-256 key *derived* from that same
  Ed25519 key (HKDF-SHA256 over its 32 secret bytes, with a fixed label), because the PDF
  readers auditors use (poppler's ``pdfsig`` with NSS 3.87, older Acrobat) cannot verify
  Ed25519 CMS signatures. No second secret exists: whoever holds the Ed25519 key can
  re-derive the P-256 key, and rotating the Ed25519 key rotates both.
* A CA of this deployment (a P-256 key and a self-signed certificate, kept in the key store
  next to the signing key, created on first use like ``ensure_dev_key`` creates the key)
  issues the signing certificate. Its subject names the Ed25519 key id, so the certificate
  binds the PDF signature to the key that signed the statement.

Files (``ATTESTATION_CA_DIR``, default ``<dir of ATTESTATION_SIGNING_KEY_FILE>/ca``):
``ca.key.pem`` (0600), ``ca.cert.pem`` and ``signing-<key id hex>.cert.pem``. Older CA
certificates kept as ``*.crt`` in ``ATTESTATION_PUBLIC_KEYS_DIR`` stay trusted after a CA
rotation, like old public keys do.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from core import files

from .keys import Signer

__all__ = [
    "SigningIdentity",
    "ca_dir",
    "certificate_fingerprint",
    "derive_pades_key",
    "ensure_ca",
    "signing_identity",
    "trusted_ca_certificates",
]

logger = logging.getLogger(__name__)

HKDF_INFO = b"protocol-change-manager attestation PAdES P-256 key v1"
CERT_YEARS = 10
DEFAULT_DEPLOYMENT_NAME = "Protocol-change manager"
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_lock = threading.Lock()
_cache: dict[tuple[str, str], SigningIdentity] = {}


@dataclass(frozen=True)
class SigningIdentity:
    """What PAdES signing needs: the derived key, its certificate and the issuing CA."""

    key_id: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate
    ca_certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.certificate)


def _settings():
    from django.conf import settings

    return settings


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (what ``openssl x509 -fingerprint
    -sha256`` prints, without the colons)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def derive_pades_key(signer: Signer) -> ec.EllipticCurvePrivateKey:
    """The P-256 key of ``signer``: HKDF-SHA256(Ed25519 secret, HKDF_INFO) reduced mod n.

    48 bytes of output reduced modulo the group order leave a bias below 2**-128. The label
    separates this key from any other use of the secret.
    """
    seed = signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=HKDF_INFO).derive(seed)
    scalar = int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ca_dir() -> Path:
    settings = _settings()
    configured = getattr(settings, "ATTESTATION_CA_DIR", "")
    if configured:
        return Path(configured)
    return Path(settings.ATTESTATION_SIGNING_KEY_FILE).parent / "ca"


def _deployment_name() -> str:
    return getattr(_settings(), "ATTESTATION_DEPLOYMENT_NAME", "") or DEFAULT_DEPLOYMENT_NAME


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _key_usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def ensure_ca(directory: Path | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The deployment's CA key and certificate, created on first use."""
    directory = directory or ca_dir()
    key_path, cert_path = directory / "ca.key.pem", directory / "ca.cert.pem"
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if files.write_once(key_path, pem):
            logger.warning("generated the attestation CA key at %s", key_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: the attestation CA key must be an EC key")
    if not cert_path.exists():
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _deployment_name()),
                x509.NameAttribute(NameOID.COMMON_NAME, "Attestation CA"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        files.write_once(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise ValueError(f"{cert_path} does not certify the key in {key_path}")
    return key, cert


def _issue_leaf(
    signer: Signer, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> x509.Certificate:
    public = derive_pades_key(signer).public_key()
    now = _now()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _deployment_name()),
            x509.NameAttribute(NameOID.COMMON_NAME, "Attestation signing key"),
            # The Ed25519 key that signs the statement: the verifier compares it with the
            # DSSE envelope's key id, so PDF signature and statement come from one key.
            x509.NameAttribute(NameOID.SERIAL_NUMBER, signer.key_id),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def signing_identity(signer: Signer, directory: Path | None = None) -> SigningIdentity:
    """The PAdES key, certificate and CA for ``signer``; issued and stored on first use."""
    directory = directory or ca_dir()
    cache_key = (str(directory), signer.key_id)
    with _lock:
        cached = _cache.get(cache_key)
        if cached is not None:
            return cached
        ca_key, ca_cert = ensure_ca(directory)
        leaf_path = directory / f"signing-{signer.key_id.split(':', 1)[-1]}.cert.pem"
        if not leaf_path.exists():
            leaf = _issue_leaf(signer, ca_key, ca_cert)
            files.write_once(leaf_path, leaf.public_bytes(serialization.Encoding.PEM))
        leaf = x509.load_pem_x509_certificate(leaf_path.read_bytes())
        private_key = derive_pades_key(signer)
        if leaf.public_key().public_numbers() != private_key.public_key().public_numbers():
            raise ValueError(f"{leaf_path} does not certify the current signing key")
        identity = SigningIdentity(signer.key_id, private_key, leaf, ca_cert)
        _cache[cache_key] = identity
        return identity


def trusted_ca_certificates() -> list[x509.Certificate]:
    """The current CA (created on first use) plus every ``*.crt`` in the trusted-keys dir."""
    certs = [ensure_ca()[1]]
    directory = getattr(_settings(), "ATTESTATION_PUBLIC_KEYS_DIR", "") or ""
    if directory and Path(directory).is_dir():
        for path in sorted(Path(directory).glob("*.crt")):
            try:
                certs.append(x509.load_pem_x509_certificate(path.read_bytes()))
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable CA certificate %s: %s", path, exc)
    return certs


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (issuer name and signature), without raising."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def named_key_id(cert: x509.Certificate) -> str:
    """The Ed25519 key id a signing certificate names (its subject serialNumber), or ""."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if values else ""


def published(signer: Signer) -> dict:
    """What this deployment publishes so anyone can check its attestations offline."""
    identity = signing_identity(signer)
    pem = serialization.Encoding.PEM
    return {
        "key_id": signer.key_id,
        "ed25519_public_key_pem": signer.public_key.public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
        "certificate_pem": identity.certificate.public_bytes(pem).decode("ascii"),
        "certificate_sha256": identity.fingerprint,
        "ca_certificate_pem": identity.ca_certificate.public_bytes(pem).decode("ascii"),
        "ca_certificate_sha256": certificate_fingerprint(identity.ca_certificate),
        "subject": identity.certificate.subject.rfc4514_string(),
        "not_after": identity.certificate.not_valid_after_utc.isoformat(),
    }
