"""The attestation CA, the PAdES signing certificate, and where they are published."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import hashlib
from io import BytesIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestations.certs import (
    certificate_fingerprint,
    derive_pades_key,
    ensure_ca,
    issued_by,
    named_key_id,
    signing_identity,
)
from attestations.keys import Signer, load_signer
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    signing_key,
)


def test_the_pades_key_is_derived_from_the_signing_key_and_nothing_else():
    signer = Signer.generate()
    first, second = derive_pades_key(signer), derive_pades_key(signer)
    assert first.private_numbers() == second.private_numbers()
    assert derive_pades_key(Signer.generate()).private_numbers() != first.private_numbers()


def test_the_ca_is_created_once_and_the_certificate_names_the_ed25519_key(tmp_path):
    signer = Signer.generate()
    identity = signing_identity(signer, tmp_path / "ca")
    _, ca = ensure_ca(tmp_path / "ca")
    assert identity.ca_certificate == ca  # read back, not regenerated
    assert ensure_ca(tmp_path / "ca")[1] == ca
    assert issued_by(identity.certificate, ca)
    assert named_key_id(identity.certificate) == signer.key_id
    assert (
        identity.certificate.public_key().public_numbers()
        == derive_pades_key(signer).public_key().public_numbers()
    )
    assert oct((tmp_path / "ca" / "ca.key.pem").stat().st_mode & 0o777) == "0o600"
    other_ca = ensure_ca(tmp_path / "other")[1]
    assert not issued_by(identity.certificate, other_ca)


@pytest.mark.django_db
def test_the_certificate_is_published_without_login_and_signs_the_pdfs(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, client
):
    from pyhanko.pdf_utils.reader import PdfFileReader

    attestation = ready_attestation(engineer, [reviewer])
    response = client.get("/attestations/certificate.pem")  # anonymous
    assert response.status_code == 200
    certs = x509.load_pem_x509_certificates(response.content)
    assert len(certs) == 2  # the signing certificate, then the CA
    leaf, ca = certs
    assert issued_by(leaf, ca)
    assert response["X-Certificate-SHA256"] == certificate_fingerprint(leaf)
    assert response["X-Key-Id"] == load_signer().key_id == attestation.key_id

    (signature,) = PdfFileReader(BytesIO(bytes(attestation.pdf))).embedded_signatures
    assert signature.signer_cert.dump() == leaf.public_bytes(serialization.Encoding.DER)

    api = client.get("/api/v1/attestations/certificate/")
    assert api.status_code == 200
    body = api.json()
    assert body["key_id"] == attestation.key_id
    assert (
        body["certificate_sha256"]
        == hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert body["ca_certificate_sha256"] == certificate_fingerprint(ca)
    assert x509.load_pem_x509_certificate(body["certificate_pem"].encode()) == leaf


@pytest.mark.django_db
def test_without_a_signing_key_the_certificate_url_says_so_instead_of_failing(
    settings, client, tmp_path
):
    settings.ATTESTATION_SIGNING_KEY = ""
    settings.ATTESTATION_SIGNING_KEY_FILE = str(tmp_path / "missing.pem")
    response = client.get("/attestations/certificate.pem")
    assert response.status_code == 503
    assert b"No attestation signing key" in response.content
    api = client.get("/api/v1/attestations/certificate/")
    assert api.status_code == 404 and api.json()["code"] == "no_signing_key"
