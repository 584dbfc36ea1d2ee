"""What travels between the coordinator and a party, in Flower's typed records.

A protocol message carries three records:
- `meta` (ConfigRecord): run id, stage, phase, round and the public run configuration;
- `public` (ConfigRecord): public material (public keys, bank codes, error reports);
- `sealed` (ArrayRecord): end-to-end encrypted payloads, keyed by the other party's id.
  The coordinator only moves these between parties; it holds no key that opens them.
Large payloads travel as uint8 arrays so that Flower can chunk them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federation.data.schema import PNS_CLIENT_ID as PNS_ID  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from flwr.app import Message, RecordDict

COORDINATOR = "coordinator"

# Phase names, in protocol order (docs/protocol.md describes each). Training: setup,
# linkage, noise (banks; retried with fewer banks if one fails), aggregate. Inference:
# setup, linkage, then status (banks) and finish, or in label mode label (PNS and one bank
# at a time) and finish.
SETUP = "setup"
LINKAGE = "linkage"
NOISE = "noise"
AGGREGATE = "aggregate"
STATUS = "status"
LABEL = "label"
FINISH = "finish"
PHASES = (SETUP, LINKAGE, NOISE, AGGREGATE, STATUS, LABEL, FINISH)


@dataclass
class Envelope:
    """The decoded content of one protocol message."""

    meta: dict[str, Any]
    public: dict[str, Any] = field(default_factory=dict)
    sealed: dict[str, bytes] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        return str(self.meta["phase"])

    def sealed_bytes(self) -> int:
        return sum(len(v) for v in self.sealed.values())

    def public_bytes(self) -> int:
        return sum(_size(v) for v in self.public.values())

    def to_record(self) -> RecordDict:
        # Flower is imported here, not at module level: the CLI reads PHASES and PNS_ID
        # from this module to build its parser, and `--help` must not wait for Flower.
        import numpy as np
        from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

        arrays = ArrayRecord(
            {k: Array(np.frombuffer(v, dtype=np.uint8)) for k, v in self.sealed.items()}
        )
        return RecordDict(
            {
                "meta": ConfigRecord(dict(self.meta)),
                "public": ConfigRecord(dict(self.public)),
                "sealed": arrays,
            }
        )

    @classmethod
    def from_message(cls, message: Message) -> Envelope:
        return cls.from_record(message.content)

    @classmethod
    def from_record(cls, content: RecordDict) -> Envelope:
        sealed = {
            k: arr.numpy().tobytes() for k, arr in content.array_records["sealed"].items()
        }
        return cls(
            meta=dict(content.config_records["meta"]),
            public=dict(content.config_records["public"]),
            sealed=sealed,
        )


def _size(value: Any) -> int:
    if isinstance(value, bytes | str):
        return len(value)
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    return 8


def public_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values (ConfigRecord cannot hold them)."""
    return {k: v for k, v in values.items() if v is not None}
