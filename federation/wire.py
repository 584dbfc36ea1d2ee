"""A minimal self-describing container for one payload's named fields.

Layout: 4-byte big-endian header length, a JSON header listing each field's name, kind,
dtype, shape and length, then the raw field bytes in order. Only numpy arrays, bytes and
JSON-able values are accepted, so decoding never executes code (no pickle).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from federation.errors import ProtocolError

_VERSION = 1


def pack(fields: Mapping[str, Any]) -> bytes:
    header: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            raw = np.ascontiguousarray(value).tobytes()
            header.append(
                {"name": name, "kind": "array", "dtype": value.dtype.str,
                 "shape": list(value.shape), "len": len(raw)}
            )
        elif isinstance(value, bytes | bytearray):
            raw = bytes(value)
            header.append({"name": name, "kind": "bytes", "len": len(raw)})
        else:
            raw = json.dumps(value).encode()
            header.append({"name": name, "kind": "json", "len": len(raw)})
        chunks.append(raw)
    head = json.dumps({"v": _VERSION, "fields": header}).encode()
    return struct.pack(">I", len(head)) + head + b"".join(chunks)


def unpack(data: bytes, *, what: str = "payload") -> dict[str, Any]:
    try:
        (head_len,) = struct.unpack(">I", data[:4])
        head = json.loads(data[4 : 4 + head_len])
        if head.get("v") != _VERSION:
            raise ValueError(f"format version {head.get('v')!r}, expected {_VERSION}")
        out: dict[str, Any] = {}
        offset = 4 + head_len
        for spec in head["fields"]:
            raw = data[offset : offset + spec["len"]]
            if len(raw) != spec["len"]:
                raise ValueError(f"field {spec['name']!r} is truncated")
            offset += spec["len"]
            if spec["kind"] == "array":
                out[spec["name"]] = np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(
                    spec["shape"]
                )
            elif spec["kind"] == "bytes":
                out[spec["name"]] = raw
            else:
                out[spec["name"]] = json.loads(raw)
        return out
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise ProtocolError(f"malformed {what}: {exc}") from exc
