"""Transcript ledger: every message that crosses a party boundary, as seen by each side.

Each party writes its own JSON-lines file (sender and receiver both record a message), so
an auditor can compare the two views. Payload fields carry a class that says how they are
protected; `plaintext` is only acceptable for public metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

MESSAGE_DIRECTIONS = ("sent", "received", "exchanged")


class PayloadClass(StrEnum):
    """How a payload field is protected when it crosses a boundary."""

    CIPHERTEXT = "ciphertext"  # homomorphic or AEAD ciphertext under a key the reader lacks
    MASKED = "masked"  # value plus a statistically hiding random mask
    SECRET_SHARE = "secret_share"  # one additive share, or a pairwise-masked aggregation input
    DP_NOISED = "dp_noised"  # released with differential-privacy noise
    KEYED_HASH = "keyed_hash"  # PRF tag under a pairwise key: reveals only equality with
    # values the reader already holds (record linkage)
    PUBLIC = "public"  # public keys, parameters, routing metadata
    PLAINTEXT = "plaintext"  # anything else: must never cross a boundary


@dataclass(frozen=True)
class TranscriptEntry:
    """One message as recorded by one party (`recorder`)."""

    run: str
    round: int
    phase: str
    sender: str
    receiver: str
    message_type: str
    nbytes: int
    fields: dict[str, str]
    recorder: str
    # "sent" | "received" (relayed messages); "exchanged" (a direct two-party computation:
    # this party's communication volume with the other, both ways); "release"; "refusal"
    direction: str
    time: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)


class TranscriptLedger:
    """Append-only ledger of one party; `path=None` keeps entries in memory only."""

    def __init__(self, party: str, run: str, path: Path | None = None) -> None:
        self.party = party
        self.run = run
        self.path = Path(path) if path is not None else None
        self._entries: list[TranscriptEntry] = []  # used only without a file
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, entry: TranscriptEntry) -> TranscriptEntry:
        # File-backed ledgers only append: a party opens one per message, so reading the
        # whole history back each time would grow with the run.
        if self.path is None:
            self._entries.append(entry)
        else:
            _append_line(self.path, json.dumps(asdict(entry), sort_keys=True) + "\n")
        return entry

    def record(
        self,
        *,
        direction: str,
        round: int,
        phase: str,
        sender: str,
        receiver: str,
        message_type: str,
        nbytes: int,
        fields: Mapping[str, PayloadClass],
        details: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> TranscriptEntry:
        """Record a message this party sent or received, or a computation it took part in
        (`at`: when, if not now)."""
        if direction not in MESSAGE_DIRECTIONS:
            raise ValueError(f"direction must be one of {MESSAGE_DIRECTIONS}, got {direction!r}")
        return self._append(
            TranscriptEntry(
                run=self.run,
                round=round,
                phase=phase,
                sender=sender,
                receiver=receiver,
                message_type=message_type,
                nbytes=int(nbytes),
                fields={k: PayloadClass(v).value for k, v in fields.items()},
                recorder=self.party,
                direction=direction,
                details=dict(details or {}),
                **({"time": at} if at is not None else {}),
            )
        )

    def record_release(self, *, phase: str, round: int, details: Mapping[str, Any]) -> None:
        """Record a differential-privacy release (written by the accountant)."""
        self._append(
            TranscriptEntry(
                run=self.run,
                round=round,
                phase=phase,
                sender=self.party,
                receiver="",
                message_type="dp_release",
                nbytes=0,
                fields={},
                recorder=self.party,
                direction="release",
                details=dict(details),
            )
        )

    def record_refusal(self, *, phase: str, round: int, setting: str, reason: str) -> None:
        """Record a request this party refused under its own policy."""
        self._append(
            TranscriptEntry(
                run=self.run, round=round, phase=phase, sender=self.party, receiver="",
                message_type="policy_refusal", nbytes=0, fields={}, recorder=self.party,
                direction="refusal", details={"setting": setting, "reason": reason},
            )
        )

    @property
    def entries(self) -> list[TranscriptEntry]:
        """Everything recorded so far (read back from the file when there is one)."""
        if self.path is None:
            return list(self._entries)
        return list(read_ledger(self.path)) if self.path.exists() else []


def _append_line(path: Path, line: str) -> None:
    """Append one line with a single write. A process killed mid-write (Ctrl-C, a crash)
    can leave a torn last line without its newline: it is cut off before the next entry,
    so the ledger never holds a damaged line between good ones."""
    import os

    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            cut = tail.rfind(b"\n")
            os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else 0)
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_ledger(path: Path) -> Iterable[TranscriptEntry]:
    """Read entries back from a JSON-lines ledger file; a damaged line is named (file and
    line), never a parser traceback."""
    from federation.errors import DataError

    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = TranscriptEntry(**json.loads(line))
            except (ValueError, TypeError) as exc:
                if not line.endswith("\n"):  # only the last line can lack one
                    return  # the torn last line of an interrupted write: never complete
                raise DataError(f"{path}: line {number}: not a ledger entry "
                                f"({str(exc).splitlines()[0]}); the ledger is damaged") from None
            yield entry


def merge_ledgers(paths: Iterable[Path], out: Path, runs: set[str] | None = None
                  ) -> list[TranscriptEntry]:
    """Merge per-party ledgers into one file ordered by time (only `runs`, if given)."""
    entries = sorted((e for p in paths for e in read_ledger(p)
                      if runs is None or e.run in runs), key=lambda e: e.time)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed over: the merged ledger is complete or the old one stays.
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
    tmp.replace(out)
    return entries


def plaintext_violations(entries: Iterable[TranscriptEntry]) -> list[TranscriptEntry]:
    """Messages crossing a boundary with a field classed plaintext."""
    return [
        e
        for e in entries
        if e.direction in MESSAGE_DIRECTIONS
        and e.sender != e.receiver
        and PayloadClass.PLAINTEXT.value in e.fields.values()
    ]
