"""The platform layer (core/): its ports, the shared key and file routines, the API and page
kits. What moved here from ``changes`` keeps its tests where they were; these cover what the
move created."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404
from django.test import RequestFactory
from rest_framework.exceptions import NotFound

from attestations import keys
from changes import checkpoints, hooks, states
from changes.models import ApiToken, AuditEvent, ChangeRequest
from core import api, audit, crypto, errors, files, ports, ui


def _raw_b64(key: Ed25519PrivateKey, *, urlsafe=False, padded=True) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if padded else text.rstrip("=")


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _same(a: Ed25519PrivateKey, b: Ed25519PrivateKey) -> bool:
    return _raw_b64(a) == _raw_b64(b)


# --- ports ------------------------------------------------------------------------------------


def test_changes_lends_core_its_audit_writer_and_token_model():
    assert ports.token_model() is ApiToken
    assert ports._audit_writer is not None


@pytest.mark.django_db
def test_a_denial_is_written_through_the_audit_port(engineer):
    request = RequestFactory().post("/somewhere/")
    request.user = engineer

    audit.record_denial(request, "Only admins do that.")

    event = AuditEvent.objects.get(verb="permission.denied")
    assert event.actor_username == engineer.username
    assert event.data == {"path": "/somewhere/", "method": "POST", "detail": "Only admins do that."}


def test_without_a_registered_writer_a_denial_fails_loudly(monkeypatch):
    monkeypatch.setattr(ports, "_audit_writer", None)
    monkeypatch.setattr(ports, "_token_model", None)
    request = RequestFactory().get("/x/")

    with pytest.raises(ImproperlyConfigured, match="audit writer"):
        audit.record_denial(request, "no")
    with pytest.raises(ImproperlyConfigured, match="token model"):
        ports.token_model()


def test_the_null_ports_offer_no_suites_and_make_no_key():
    assert hooks.EvaluationPort().suite_choices() == []
    assert hooks.AttestationPort().ensure_demo_key() == ""


def test_a_refused_change_transition_is_a_core_invalid_transition_answered_409():
    with pytest.raises(errors.InvalidTransition) as info:
        states.assert_transition(states.DRAFT, states.DEPLOYED)

    error = errors.as_domain_error(info.value)
    assert isinstance(error, errors.Conflict) and error.code == "invalid_transition"


# --- one key reader for attestations and checkpoints ------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(_pem, id="pem"),
        pytest.param(lambda k: _pem(k).replace("\n", "\\n"), id="pem-escaped-newlines"),
        pytest.param(_raw_b64, id="base64"),
        pytest.param(lambda k: _raw_b64(k, urlsafe=True, padded=False), id="urlsafe-unpadded"),
        pytest.param(lambda k: " " + _raw_b64(k)[:20] + "\n" + _raw_b64(k)[20:], id="wrapped"),
    ],
)
def test_both_signers_read_every_accepted_spelling_of_a_key(settings, encode):
    key = Ed25519PrivateKey.generate()
    text = encode(key)
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = text

    assert _same(crypto.ed25519_private_key(text, "X"), key)
    assert _same(checkpoints.signing_key(), key)
    assert _same(keys.load_signer(pem=text).private_key, key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bm90IGEga2V5", "base64 key must decode to 32 bytes"),
        ("***", "not a readable Ed25519 private key"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "are signed with Ed25519 keys only"),
    ],
)
def test_an_unreadable_key_is_refused_by_both_signers_with_the_same_reason(settings, text, message):
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = text

    with pytest.raises(crypto.UnreadableKey, match=message):
        crypto.ed25519_private_key(text, "X")
    with pytest.raises(
        checkpoints.CheckpointError, match=f"AUDIT_CHECKPOINT_SIGNING_KEY: .*{message}"
    ):
        checkpoints.signing_key()
    with pytest.raises(keys.SigningKeyError, match=f"ATTESTATION_SIGNING_KEY: .*{message}"):
        keys.load_signer(pem=text)


# --- write once -------------------------------------------------------------------------------


def test_write_once_creates_a_private_file_and_never_overwrites(tmp_path):
    path = tmp_path / "new" / "dir" / "file.pem"

    assert files.write_once(path, b"first") is True
    assert files.write_once(path, b"second") is False

    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob(".tmp-*"))


def test_write_once_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError("this volume has no hard links")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "key.pem"

    assert files.write_once(path, b"first") is True
    assert files.write_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert not list(tmp_path.glob(".tmp-*"))


# --- API and page kits ------------------------------------------------------------------------


class _Gate(api.RoleGate):
    def allows(self, user):
        return user == "allowed"


class _Request:
    def __init__(self, method, user):
        self.method, self.user = method, user


@pytest.mark.parametrize(
    ("gate_reads", "gated", "method", "user", "passes"),
    [
        (False, {"POST"}, "GET", "someone", True),  # reads pass
        (True, {"POST"}, "GET", "someone", False),  # unless reads are gated
        (True, {"POST"}, "GET", "allowed", True),
        (False, {"POST"}, "POST", "someone", False),
        (False, {"POST"}, "POST", "allowed", True),
        (False, {"POST"}, "PATCH", "someone", True),  # a write this gate does not gate
    ],
)
def test_a_role_gate_gates_only_what_it_names(gate_reads, gated, method, user, passes):
    gate = type("G", (_Gate,), {"gate_reads": gate_reads, "gated_methods": frozenset(gated)})()

    assert gate.has_permission(_Request(method, user), view=None) is passes


def test_a_lookup_that_finds_nothing_is_a_404_in_the_api_and_the_pages():
    def lookup(pk):
        raise ChangeRequest.DoesNotExist

    with pytest.raises(NotFound, match="No such change."):
        api.or_404(lookup, 1, detail="No such change.")
    with pytest.raises(Http404, match="No such change."):
        ui.or_404(lookup, 1, detail="No such change.")
    assert api.or_404(lambda pk: pk, 7) == 7 and ui.or_404(lambda pk: pk, 7) == 7
