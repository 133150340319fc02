"""The RFC 9162 Merkle tree and the C2SP signed note behind audit checkpoints. No database."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from changes import checkpoints as cp

# Certificate Transparency's reference leaves and tree heads (RFC 6962 = RFC 9162 hashing).
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PROOF_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def _ct_leaf(hex_data: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(hex_data)).digest()


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 section 2.1.1 defines it, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return cp.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_roots_match_the_certificate_transparency_vectors(size):
    leaves = [_ct_leaf(d) for d in CT_LEAVES[:size]]
    assert cp.merkle_root(leaves).hex() == CT_ROOTS[size]
    assert cp.MerkleTree(leaves).root().hex() == CT_ROOTS[size]


def test_the_proof_of_leaf_0_matches_the_published_one():
    tree = cp.MerkleTree(_ct_leaf(d) for d in CT_LEAVES)
    assert [h.hex() for h in tree.inclusion_proof(0)] == CT_PROOF_0_OF_8


def test_every_proof_verifies_in_every_tree_shape_and_nothing_else_does():
    all_leaves = [hashlib.sha256(bytes([0, n])).digest() for n in range(37)]
    for size in range(1, 38):
        leaves = all_leaves[:size]
        tree = cp.MerkleTree(leaves)
        root = _reference_root(leaves)
        assert tree.root() == root == cp.merkle_root(leaves)
        for index in range(size):
            proof = tree.inclusion_proof(index)
            assert cp.verify_inclusion(leaves[index], index, size, proof, root)
            # the wrong leaf, position, size or root never verifies
            other = leaves[(index + 1) % size] if size > 1 else b"\x00" * 32
            assert not cp.verify_inclusion(other, index, size, proof, root)
            assert not cp.verify_inclusion(leaves[index], index, size, proof, b"\x01" * 32)
            assert not cp.verify_inclusion(leaves[index], size, size, proof, root)
            if proof:
                assert not cp.verify_inclusion(leaves[index], index, size, proof[:-1], root)


def _signed(body_size=3, key=None, origin="example.test/audit"):
    key = key or Ed25519PrivateKey.generate()
    root = cp.merkle_root([cp.leaf_hash("ab" * 32)] * body_size)
    body = cp.format_body(origin, body_size, root, 42, "ab" * 32, "2026-12-04T21:00:00Z")
    return key, cp.sign_body(body, key, origin)


def test_a_note_is_in_the_c2sp_format_and_verifies():
    key, note = _signed()
    lines = note.split("\n")
    # origin, size, base64 root, extension lines, a blank line, then "— origin sig"
    assert lines[0] == "example.test/audit" and lines[1] == "3"
    assert len(base64.b64decode(lines[2])) == 32
    assert lines[5] == "" and lines[6].startswith("\u2014 example.test/audit ")
    blob = base64.b64decode(lines[6].rsplit(" ", 1)[1])
    assert blob[:4] == cp.note_key_hash("example.test/audit", key.public_key())
    assert len(blob) == 68
    parsed = cp.parse_note(note)
    assert (parsed.size, parsed.head_id, parsed.time) == (3, 42, "2026-12-04T21:00:00Z")
    assert cp.signature_valid(parsed, [key.public_key()])


@pytest.mark.parametrize(
    "edit",
    [
        lambda n: n.replace("\n3\n", "\n4\n", 1),
        lambda n: n.replace("head 42", "head 41", 1),
        lambda n: n.replace("21:00:00Z", "21:00:01Z", 1),
        lambda n: n.replace("example.test/audit\n", "other.test/audit\n", 1),
    ],
    ids=["size", "head", "time", "origin"],
)
def test_any_edit_to_the_signed_text_breaks_the_signature(edit):
    key, note = _signed()
    assert not cp.signature_valid(cp.parse_note(edit(note)), [key.public_key()])


def test_another_key_does_not_verify():
    _, note = _signed()
    assert not cp.signature_valid(cp.parse_note(note), [Ed25519PrivateKey.generate().public_key()])


@pytest.mark.parametrize(
    "text",
    ["", "no blank line\n", "a\nx\nAAAA\n\n", "a\n01\n" + "A" * 43 + "=\n\n", "a\n1\n!!\n\n"],
)
def test_malformed_notes_are_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        cp.parse_note(text)


def test_an_origin_with_a_space_is_refused():
    with pytest.raises(cp.CheckpointError):
        cp.format_body("two words", 0, cp.EMPTY_ROOT, None, "", "t")


def test_the_verifier_key_names_the_key_hash_the_signature_lines_carry():
    key, note = _signed()
    name, key_hash, encoded = cp.vkey("example.test/audit", key.public_key()).split("+", 2)
    assert name == "example.test/audit"
    assert bytes.fromhex(key_hash) == cp.note_key_hash(name, key.public_key())
    assert base64.b64decode(encoded) == b"\x01" + cp.raw_public_key(key.public_key())
    signature_line = note.rstrip("\n").split("\n")[-1]
    assert base64.b64decode(signature_line.rsplit(" ", 1)[1])[:4].hex() == key_hash
