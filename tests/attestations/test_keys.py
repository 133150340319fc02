"""Signing keys: key ids, loading from PEM/base64/file, dev key generation, trusted keys."""

import base64
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from attestations.dsse import envelope_bytes, sign_envelope, verify_envelope
from attestations.keys import (
    Signer,
    SigningKeyError,
    ensure_dev_key,
    key_id_for,
    load_signer,
    public_key_pem,
    trusted_public_keys,
)


def _pem(signer: Signer) -> str:
    return signer.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_key_id_is_stable_and_short(signer):
    key_id = key_id_for(signer.public_key)
    assert key_id == signer.key_id == key_id_for(signer.public_key)
    assert key_id.startswith("ed25519:") and len(key_id) == len("ed25519:") + 16
    assert key_id != Signer.generate().key_id


def test_signer_repr_does_not_show_the_private_key(signer):
    assert "private" not in repr(signer)


def test_load_signer_from_pem_text(signer):
    assert load_signer(pem=_pem(signer)).key_id == signer.key_id


def test_load_signer_from_single_line_pem_with_escaped_newlines(signer):
    one_line = _pem(signer).replace("\n", "\\n")
    assert load_signer(pem=one_line).key_id == signer.key_id


@pytest.mark.parametrize("urlsafe", [False, True])
def test_load_signer_from_base64_raw_key(signer, urlsafe):
    raw = signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    assert load_signer(pem=encoded.rstrip("=")).key_id == signer.key_id


def test_load_signer_from_file(tmp_path, signer):
    path = tmp_path / "key.pem"
    path.write_text(_pem(signer))
    assert load_signer(path=path).key_id == signer.key_id


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        base64.b64encode(b"too short").decode(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_unreadable_keys_raise_signing_key_error(text):
    with pytest.raises(SigningKeyError):
        load_signer(pem=text)


def test_non_ed25519_keys_are_refused():
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        load_signer(pem=pem.decode())


def test_a_missing_key_file_raises_and_says_how_to_fix_it(tmp_path):
    with pytest.raises(SigningKeyError, match="seed_demo"):
        load_signer(path=tmp_path / "absent.pem")


def test_ensure_dev_key_creates_a_private_pkcs8_key_once(tmp_path):
    # given no key
    path = tmp_path / "keys" / "dev.pem"
    # when
    created_path, created = ensure_dev_key(path)
    again_path, created_again = ensure_dev_key(path)
    # then
    assert (created_path, created) == (path, True)
    assert (again_path, created_again) == (path, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert load_signer(path=path).key_id.startswith("ed25519:")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_ensure_dev_key_keeps_an_existing_key(tmp_path, signer):
    path = tmp_path / "dev.pem"
    path.write_text(_pem(signer))
    assert ensure_dev_key(path) == (path, False)
    assert load_signer(path=path).key_id == signer.key_id


def test_trusted_keys_include_the_signer_and_the_rotation_directory(tmp_path, signer, caplog):
    # given an old key whose public half was kept after rotation, and some junk
    old = Signer.generate()
    (tmp_path / "old.pem").write_bytes(public_key_pem(old.public_key))
    (tmp_path / "junk.pem").write_text("garbage")
    ec_public = generate_private_key(SECP256R1()).public_key()
    (tmp_path / "ec.pem").write_bytes(
        ec_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "ignored.txt").write_bytes(public_key_pem(Signer.generate().public_key))
    # when
    keys = trusted_public_keys(signer=signer, public_keys_dir=tmp_path)
    # then
    assert set(keys) == {signer.key_id, old.key_id}
    old_envelope = envelope_bytes(sign_envelope(b"signed before rotation", old))
    assert verify_envelope(old_envelope, keys)[0] is True
    assert "junk.pem" in caplog.text and "ec.pem" in caplog.text


def test_trusted_keys_without_a_signer_or_directory(tmp_path):
    assert trusted_public_keys(public_keys_dir=tmp_path / "missing") == {}


def _django_settings_or_skip():
    from django.conf import settings

    if not settings.configured:
        pytest.skip("Django settings are not configured in this run")
    return settings


def test_settings_drive_loading_generation_and_trust(tmp_path, signer):
    settings = _django_settings_or_skip()
    from django.test import override_settings

    key_file = tmp_path / "dev.pem"
    trusted_dir = tmp_path / "trusted"
    trusted_dir.mkdir()
    old = Signer.generate()
    (trusted_dir / "old.pem").write_bytes(public_key_pem(old.public_key))
    with override_settings(
        ATTESTATION_SIGNING_KEY="",
        ATTESTATION_SIGNING_KEY_FILE=str(key_file),
        ATTESTATION_PUBLIC_KEYS_DIR=str(trusted_dir),
    ):
        with pytest.raises(SigningKeyError):
            load_signer()
        assert ensure_dev_key() == (key_file, True)
        current = load_signer()
        assert set(trusted_public_keys()) == {current.key_id, old.key_id}
    # an env key wins over the file and means no file is generated
    with override_settings(
        ATTESTATION_SIGNING_KEY=_pem(signer),
        ATTESTATION_SIGNING_KEY_FILE=str(tmp_path / "never.pem"),
    ):
        assert load_signer().key_id == signer.key_id
        assert ensure_dev_key() == (tmp_path / "never.pem", False)
        assert not (tmp_path / "never.pem").exists()
    assert settings.configured
