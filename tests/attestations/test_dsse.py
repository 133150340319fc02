"""DSSE envelopes: the spec's encoding, round trips, and that any altered byte is rejected."""

import base64
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestations.dsse import (
    PAYLOAD_TYPE,
    envelope_bytes,
    pae,
    sign_envelope,
    verify_envelope,
)
from attestations.keys import Signer

# One key for the property tests: generating a key per example would only slow them down.
SIGNER = Signer.generate()
TRUSTED = {SIGNER.key_id: SIGNER.public_key}


def failed_checks(checks):
    return [item["name"] for item in checks if not item["ok"]]


def test_pae_matches_the_spec_test_vector():
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters():
    assert pae("t/é", b"\xff") == b"DSSEv1 4 t/\xc3\xa9 1 \xff"


def test_sign_then_verify_returns_the_payload(signer, trusted):
    # given
    payload = b'{"hello": "world"}'
    # when
    envelope = sign_envelope(payload, signer)
    valid, got, checks = verify_envelope(envelope_bytes(envelope), trusted)
    # then
    assert valid is True
    assert got == payload
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope["signatures"][0]["keyid"] == signer.key_id
    assert base64.b64decode(envelope["payload"]) == payload
    assert [c["name"] for c in checks] == [
        "envelope_parses",
        "envelope_fields",
        "payload_type",
        "payload_base64",
        "signature",
    ]
    assert all(c["ok"] for c in checks)


def test_a_dict_envelope_verifies_too(signer, trusted):
    valid, payload, _ = verify_envelope(sign_envelope(b"x", signer), trusted)
    assert valid and payload == b"x"


def test_a_key_that_is_not_trusted_fails(signer):
    other = Signer.generate()
    valid, payload, checks = verify_envelope(
        envelope_bytes(sign_envelope(b"x", signer)), {other.key_id: other.public_key}
    )
    assert (valid, payload) == (False, None)
    assert failed_checks(checks) == ["signature"]
    assert "not trusted" in checks[-1]["detail"]


def test_a_trusted_key_id_with_the_wrong_key_fails(signer):
    impostor = Signer.generate()
    envelope = envelope_bytes(sign_envelope(b"x", signer))
    valid, _, checks = verify_envelope(envelope, {signer.key_id: impostor.public_key})
    assert not valid
    assert failed_checks(checks) == ["signature"]


def test_an_extra_signature_from_an_unknown_key_fails(signer, trusted):
    envelope = sign_envelope(b"x", signer)
    extra = sign_envelope(b"x", Signer.generate())["signatures"][0]
    envelope["signatures"].append(extra)
    valid, _, checks = verify_envelope(envelope_bytes(envelope), trusted)
    assert not valid
    assert failed_checks(checks) == ["signature"]


def test_a_signature_over_another_payload_type_fails(signer, trusted):
    envelope = sign_envelope(b"x", signer, payload_type="application/json")
    valid, _, checks = verify_envelope(envelope_bytes(envelope), trusted)
    assert not valid
    assert failed_checks(checks) == ["payload_type"]
    # and relabelling it does not help: the type is inside the signed bytes
    envelope["payloadType"] = PAYLOAD_TYPE
    valid, _, checks = verify_envelope(envelope_bytes(envelope), trusted)
    assert not valid
    assert failed_checks(checks) == ["signature"]


@pytest.mark.parametrize(
    ("raw", "failing"),
    [
        (b"", "envelope_parses"),
        (b"not json", "envelope_parses"),
        (b"\xff\xfe{}", "envelope_parses"),
        (b"[]", "envelope_parses"),
        (b'"a string"', "envelope_parses"),
        (b"{}", "envelope_fields"),
        (b'{"payload":"eA==","payloadType":"application/vnd.in-toto+json"}', "envelope_fields"),
        (
            b'{"payload":"eA==","payloadType":"application/vnd.in-toto+json","signatures":[]}',
            "envelope_fields",
        ),
        (
            b'{"payload":"eA==","payloadType":"application/vnd.in-toto+json","signatures":[1]}',
            "envelope_fields",
        ),
        (
            b'{"payload":1,"payloadType":"application/vnd.in-toto+json",'
            b'"signatures":[{"keyid":"k","sig":"eA=="}]}',
            "envelope_fields",
        ),
        (
            b'{"payload":"!!!","payloadType":"application/vnd.in-toto+json",'
            b'"signatures":[{"keyid":"k","sig":"eA=="}]}',
            "payload_base64",
        ),
        (
            # "eB==" decodes to the same byte as "eA==": only the canonical form is accepted
            b'{"payload":"eB==","payloadType":"application/vnd.in-toto+json",'
            b'"signatures":[{"keyid":"k","sig":"eA=="}]}',
            "payload_base64",
        ),
        (b'{"a":' * 100_000, "envelope_parses"),
    ],
)
def test_malformed_envelopes_fail_with_a_named_check_and_never_raise(raw, failing):
    valid, payload, checks = verify_envelope(raw, TRUSTED)
    assert (valid, payload) == (False, None)
    assert failed_checks(checks) == [failing]
    assert all(set(c) == {"name", "ok", "detail", "label"} for c in checks)
    assert all(c["label"] and "_" not in c["label"] for c in checks)  # words, not identifiers


def test_non_canonical_serialisation_is_rejected(signer, trusted):
    # given the same envelope, pretty-printed: JSON-equal, but not the bytes we signed and stored
    envelope = sign_envelope(b"x", signer)
    pretty = json.dumps(envelope, indent=2).encode()
    # then
    valid, _, checks = verify_envelope(pretty, trusted)
    assert not valid
    assert failed_checks(checks) == ["envelope_parses"]


def test_unsupported_input_types_fail_without_raising():
    for value in (None, 42, ["x"], object()):
        valid, payload, checks = verify_envelope(value, TRUSTED)
        assert (valid, payload) == (False, None)
        assert failed_checks(checks) == ["envelope_parses"]


def _flip(data: bytes, index: int, new: int) -> bytes:
    assert data[index] != new
    return data[:index] + bytes([new]) + data[index + 1 :]


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(payload=st.binary(max_size=600), data=st.data())
def test_flipping_any_one_byte_of_a_random_envelope_makes_it_invalid(payload, data):
    # given a freshly signed envelope over a random payload
    raw = envelope_bytes(sign_envelope(payload, SIGNER))
    assert verify_envelope(raw, TRUSTED)[0] is True
    # when any one byte is changed to any other value
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]), label="byte")
    valid, got, _ = verify_envelope(_flip(raw, index, new), TRUSTED)
    # then verification fails
    assert (valid, got) == (False, None)


def test_flipping_every_byte_of_one_envelope_makes_it_invalid(envelope, trusted):
    rng = random.Random(4)
    assert verify_envelope(envelope, trusted)[0] is True
    for index, old in enumerate(envelope):
        for new in {
            old ^ 0x01,
            old ^ 0x20,
            old ^ 0x80,
            rng.choice([b for b in range(256) if b != old]),
        }:
            valid, _, _ = verify_envelope(_flip(envelope, index, new), trusted)
            assert valid is False, f"byte {index} changed {old:#x} -> {new:#x} still verified"


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_arbitrary_input_never_raises(raw):
    valid, payload, checks = verify_envelope(raw, TRUSTED)
    assert valid is False and payload is None and checks


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["payload", "payloadType", "signatures", "keyid", "sig", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_json_shapes_never_raise(value):
    valid, payload, _ = verify_envelope(json.dumps(value).encode(), TRUSTED)
    assert valid is False and payload is None
