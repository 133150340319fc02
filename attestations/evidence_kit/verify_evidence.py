#!/usr/bin/env python3
"""Check an evidence package offline: python3 verify_evidence.py evidence.zip

Standard library only, except the Ed25519 signature of the checkpoint, which needs the
``cryptography`` package (``pip install cryptography``); without it, pass --skip-signature
and check the signature with openssl as VERIFY.md shows. Checks, in order:

1. the checkpoint is a C2SP signed note, signed by the key in keys/ (or --public-key);
2. every event in events.jsonl hashes to its chain hash, its fields are the hashed ones,
   and its RFC 9162 inclusion proof puts it under the checkpoint's Merkle root;
3. every attestation PDF is the one an ``attestation.issued`` event recorded (by SHA-256),
   and every issued attestation's PDF is in the package;
4. every file matches manifest.json.

Prints one line per check and exits 0 when all pass, 1 otherwise.
"""

import argparse
import base64
import hashlib
import json
import sys
import zipfile

SIG_PREFIX = "\u2014 "


def leaf_hash(event_hash_hex):
    return hashlib.sha256(b"\x00" + bytes.fromhex(event_hash_hex)).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
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


def parse_checkpoint(text):
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise ValueError("no blank line before the signatures")
    lines = body.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    signatures = []
    for line in sigs.split("\n"):
        if line.startswith(SIG_PREFIX):
            name, _, blob = line[len(SIG_PREFIX) :].partition(" ")
            signatures.append((name, base64.b64decode(blob, validate=True)))
    return {"origin": origin, "size": size, "root": root, "body": body + "\n", "sigs": signatures}


def check_signature(cp, pem_bytes):
    """True/False, or None when the cryptography package is not installed."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        return None
    key = serialization.load_pem_public_key(pem_bytes)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_hash = hashlib.sha256(cp["origin"].encode() + b"\n\x01" + raw).digest()[:4]
    for name, blob in cp["sigs"]:
        if name == cp["origin"] and blob[:4] == key_hash and len(blob) == 68:
            try:
                key.verify(blob[4:], cp["body"].encode())
                return True
            except Exception:  # noqa: BLE001, S112 - InvalidSignature: try the next line
                continue
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("package", help="the evidence .zip")
    parser.add_argument("--public-key", help="a PEM public key obtained out of band")
    parser.add_argument("--skip-signature", action="store_true")
    args = parser.parse_args(argv)
    failures = []

    def report(ok, message):
        print(("PASS  " if ok else "FAIL  ") + message)
        if not ok:
            failures.append(message)

    with zipfile.ZipFile(args.package) as package:
        files = {name: package.read(name) for name in package.namelist()}

    # 4. manifest
    manifest = json.loads(files.get("manifest.json", b"{}"))
    for name, digest in sorted(manifest.get("files", {}).items()):
        actual = hashlib.sha256(files[name]).hexdigest() if name in files else None
        report(actual == digest, f"manifest: {name}")

    # 1. checkpoint
    if "checkpoint/checkpoint.txt" not in files:
        report(False, "the package has no checkpoint")
        return 1
    cp = parse_checkpoint(files["checkpoint/checkpoint.txt"].decode())
    if args.public_key:
        with open(args.public_key, "rb") as handle:
            pem = handle.read()
    else:
        pem = files.get("keys/audit-checkpoint-key.pem", b"")
    fingerprint = hashlib.sha256(pem).hexdigest()[:16]
    signed = check_signature(cp, pem) if pem else False
    if signed is None:
        print("SKIP  checkpoint signature: `cryptography` is not installed (see VERIFY.md)")
        if not args.skip_signature:
            failures.append("checkpoint signature not checked")
    else:
        report(
            signed, f"checkpoint {cp['origin']} size {cp['size']} signed (key PEM {fingerprint})"
        )

    # 2. events
    issued_pdfs = {}
    lines = files.get("events.jsonl", b"").decode().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            event, canonical = entry["event"], entry["canonical"]
            label = f"event #{event['id']} {event['verb']}"
            hashed = hashlib.sha256((event["prev_hash"] + canonical).encode()).hexdigest()
            fields = {k: event[k] for k in json.loads(canonical)}
            content_ok = hashed == event["hash"] and fields == json.loads(canonical)
        except (KeyError, TypeError, ValueError) as exc:
            report(False, f"events.jsonl line {number}: unreadable ({exc})")
            continue
        report(content_ok, f"{label}: content hashes to its chain hash")
        proof = entry.get("proof")
        if proof is None:
            print(f"NOTE  {label}: newer than the checkpoint, no proof yet")
        else:
            included = proof["tree_size"] == cp["size"] and verify_inclusion(
                leaf_hash(event["hash"]),
                proof["leaf_index"],
                proof["tree_size"],
                [base64.b64decode(h) for h in proof["hashes"]],
                cp["root"],
            )
            report(included, f"{label}: included in the checkpoint (leaf {proof['leaf_index']})")
        if content_ok and event["verb"] == "attestation.issued":
            data = event.get("data") or {}
            issued_pdfs[data.get("pdf_sha256")] = f"v{data.get('version')} (event #{event['id']})"

    # 3. attestation PDFs against the events that recorded them, both ways
    shipped = set()
    for name in sorted(n for n in files if n.startswith("attestations/") and n.endswith(".pdf")):
        digest = hashlib.sha256(files[name]).hexdigest()
        shipped.add(digest)
        report(digest in issued_pdfs, f"{name}: recorded by an attestation.issued event")
    for digest, which in sorted(issued_pdfs.items(), key=lambda item: item[1]):
        report(digest in shipped, f"attestation {which}: its PDF is in the package")

    print("VALID" if not failures else f"NOT VALID: {len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
