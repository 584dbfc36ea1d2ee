"""Content evidence of what crossed a boundary, for an audit that checks bytes, not labels.

A party records, next to each sealed message in its ledger, the SHA-256 of the blob that
crossed the wire and of the payload inside it, and each payload field's digest, size and
encoding (federation/wire.py). The receiver also records the blob's clear routing header
and body length (the shape of a ChaCha20-Poly1305 blob for that recipient) and keeps each
received field's bytes under its state directory (`evidence/<sha256>`), which is what the
audit parses: a CKKS field must load as SEAL ciphertexts under the stated parameters, a
keyed hash must look random, a noised status must lie in range and match a release.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EVIDENCE_DIR = "evidence"
AEAD_TAG = 16  # ChaCha20-Poly1305 tag bytes
NONCE = 12


def sha256(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def payload_fields(payload: bytes) -> dict[str, dict[str, Any]]:
    """Each field of a wire payload: kind, dtype, shape, size, digest and its byte range.
    Empty if the bytes are not a wire payload."""
    try:
        (head_len,) = struct.unpack(">I", payload[:4])
        head = json.loads(payload[4:4 + head_len])
        offset, out = 4 + head_len, {}
        for spec in head["fields"]:
            raw = payload[offset:offset + spec["len"]]
            out[spec["name"]] = {
                "kind": spec["kind"], "dtype": spec.get("dtype"), "shape": spec.get("shape"),
                "nbytes": len(raw), "sha256": sha256(raw), "_range": (offset, offset + len(raw))}
            offset += spec["len"]
        return out
    except (ValueError, KeyError, TypeError, struct.error):
        return {}


def _public(fields: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: {k: v for k, v in f.items() if not k.startswith("_")} for n, f in fields.items()}


def sent(payload: bytes, blob: bytes) -> dict[str, Any]:
    """What the sender records about a sealed message it sends."""
    return {"blob_sha256": sha256(blob), "payload_sha256": sha256(payload),
            "payload_nbytes": len(payload), "field_evidence": _public(payload_fields(payload))}


def received(payload: bytes, blob: bytes, store: Path | None) -> dict[str, Any]:
    """What the receiver records (after authenticating the blob): the sender's view plus
    the blob's clear header and body length; each field's bytes are kept in `store`."""
    fields = payload_fields(payload)
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        for info in fields.values():
            path = store / info["sha256"]
            if not path.exists():
                start, end = info["_range"]
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(payload[start:end])
                tmp.replace(path)
    out = {**sent(payload, blob), "field_evidence": _public(fields), "sealed": None}
    if len(blob) >= 5:
        (head_len,) = struct.unpack_from("<I", blob, 1)
        try:
            header = json.loads(bytes(blob[5:5 + head_len]))
        except ValueError:
            header = None
        if isinstance(header, dict):
            out["sealed"] = {"version": int(blob[0]), "header": header,
                             "body_nbytes": len(blob) - 5 - head_len - NONCE}
    return out


class EvidenceStore:
    """The field bytes kept by the parties of a run (or given directories), by digest."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = [Path(r) for r in roots]

    @classmethod
    def of_run(cls, run_dir: Path) -> EvidenceStore:
        return cls(sorted(Path(run_dir).glob(f"parties/*/{EVIDENCE_DIR}")))

    def get(self, digest: str) -> bytes | None:
        for root in self.roots:
            path = root / digest
            if path.is_file():
                data = path.read_bytes()
                # A stored file is only evidence if it still has the digest recorded.
                return data if sha256(data) == digest else None
        return None
