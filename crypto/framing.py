"""Versioned, checksummed framing for every serialized crypto payload.

Layout: magic `PV4F`, format version (u16), kind (length-prefixed ASCII), a JSON header
(u32 length), a list of binary blobs (u32 count, each u64 length + bytes), then the SHA-256
of everything before it. Truncated, corrupted, mislabelled or newer-version data is refused
with a CryptoError before any of it reaches SEAL.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from typing import Any

from federation.errors import CryptoError

MAGIC = b"PV4F"
FORMAT_VERSION = 1
_DIGEST = 32


def pack(kind: str, header: dict[str, Any], blobs: Sequence[bytes]) -> bytes:
    """Frame `blobs` with a typed, versioned header and a trailing checksum."""
    kind_b = kind.encode("ascii")
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    parts = [
        MAGIC,
        struct.pack("<HB", FORMAT_VERSION, len(kind_b)),
        kind_b,
        struct.pack("<I", len(head)),
        head,
        struct.pack("<I", len(blobs)),
    ]
    for blob in blobs:
        parts.append(struct.pack("<Q", len(blob)))
        parts.append(bytes(blob))
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, kind: str) -> tuple[dict[str, Any], list[bytes]]:
    """Check and open a frame of the expected `kind`; returns (header, blobs)."""
    view = memoryview(bytes(data))
    if len(view) < len(MAGIC) + 3 + _DIGEST or bytes(view[:4]) != MAGIC:
        raise CryptoError(f"{kind}: not a pv4fad crypto payload (bad magic or too short)")
    body, digest = view[:-_DIGEST], bytes(view[-_DIGEST:])
    if hashlib.sha256(body).digest() != digest:
        raise CryptoError(f"{kind}: checksum mismatch (truncated or corrupted bytes)")
    version, kind_len = struct.unpack_from("<HB", body, 4)
    if version != FORMAT_VERSION:
        raise CryptoError(f"{kind}: format version {version}, this build reads {FORMAT_VERSION}")
    pos = 7
    found = bytes(body[pos : pos + kind_len]).decode("ascii", "replace")
    if found != kind:
        raise CryptoError(f"expected a {kind} payload, found {found!r}")
    pos += kind_len
    try:
        (head_len,) = struct.unpack_from("<I", body, pos)
        header = json.loads(bytes(body[pos + 4 : pos + 4 + head_len]).decode("utf-8"))
        pos += 4 + head_len
        (count,) = struct.unpack_from("<I", body, pos)
        pos += 4
        blobs = []
        for _ in range(count):
            (size,) = struct.unpack_from("<Q", body, pos)
            pos += 8
            if pos + size > len(body):
                raise ValueError("blob runs past the end")
            blobs.append(bytes(body[pos : pos + size]))
            pos += size
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CryptoError(f"{kind}: malformed payload ({exc})") from exc
    if pos != len(body):
        raise CryptoError(f"{kind}: {len(body) - pos} unexpected trailing bytes")
    return header, blobs


def expect(header: dict[str, Any], key: str, expected: Any, kind: str) -> None:
    """Refuse a payload whose header field `key` differs from what this party expects."""
    found = header.get(key)
    if found != expected:
        raise CryptoError(f"{kind}: {key} mismatch (expected {expected!r}, found {found!r})")
