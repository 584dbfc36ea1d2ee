"""Transcript ledger: every message that crosses a party boundary, as seen by each side.

Each party writes its own JSON-lines file (sender and receiver both record a message), so
an auditor can compare the two views. Payload fields carry a class that says how they are
protected; `plaintext` is only acceptable for public metadata.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
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
    # Hash chain and signature (seq, prev, sig; key on a chain's first line): one chain per
    # recorder and run, so a ledger merged from several parties keeps every chain whole.
    chain: dict[str, Any] = field(default_factory=dict)


SIGNING_KEY_FILE = "ledger_signing.key"
GENESIS = "0" * 64  # `prev` of a chain's first line


def canonical(line: Mapping[str, Any], *, with_sig: bool) -> bytes:
    """The bytes a line's signature covers (without `sig`) or its hash covers (with)."""
    body = dict(line)
    chain = dict(body.get("chain", {}))
    if not with_sig:
        chain.pop("sig", None)
    body["chain"] = chain
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def line_hash(line: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(line, with_sig=True)).hexdigest()


def load_signing_key(path: Path, create: bool = True) -> Any:
    """A party's Ed25519 ledger-signing key (raw 32 bytes, owner-only), made on first use."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    if not path.exists():
        if not create:
            raise FileNotFoundError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


def public_key_hex(signer: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return signer.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw).hex()


class TranscriptLedger:
    """Append-only ledger of one party; `path=None` keeps entries in memory only.

    With a `signer` (the party's Ed25519 key) every line is chained to the previous line
    of the same run (`prev`, the SHA-256 of that line) and signed, so an edited, reordered,
    removed or inserted line is detected by `pv4fad audit verify` (federation/audit_verify.py).
    The chain heads live in a small side file so that appending never rereads the ledger.
    """

    def __init__(self, party: str, run: str, path: Path | None = None,
                 signer: Any = None) -> None:
        self.party = party
        self.run = run
        self.path = Path(path) if path is not None else None
        self.signer = signer
        self._entries: list[TranscriptEntry] = []  # used only without a file
        self._heads: dict[str, list[Any]] = {}  # run -> [seq, hash], without a file
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def heads_path(self) -> Path | None:
        return None if self.path is None else self.path.with_suffix(".heads.json")

    def _read_heads(self) -> dict[str, list[Any]]:
        if self.heads_path is None:
            return self._heads
        return json.loads(self.heads_path.read_text()) if self.heads_path.exists() else {}

    def head(self) -> str:
        """`seq:hash` of this run's last signed line ('' before the first): a party puts it
        in its replies, so the coordinator's ledger anchors the end of the chain."""
        head = self._read_heads().get(self.run)
        return f"{head[0]}:{head[1]}" if head else ""

    def _sign(self, entry: TranscriptEntry) -> TranscriptEntry:
        heads = self._read_heads()
        seq, prev = heads.get(entry.run, [-1, GENESIS])
        chain: dict[str, Any] = {"seq": int(seq) + 1, "prev": prev}
        if chain["seq"] == 0:
            chain["key"] = public_key_hex(self.signer)
        line = dict(asdict(entry), chain=chain)
        chain["sig"] = self.signer.sign(canonical(line, with_sig=False)).hex()
        line["chain"] = chain
        heads[entry.run] = [chain["seq"], line_hash(line)]
        if self.heads_path is None:
            self._heads = heads
        else:
            tmp = self.heads_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(heads))
            tmp.replace(self.heads_path)
        return TranscriptEntry(**line)

    def _append(self, entry: TranscriptEntry) -> TranscriptEntry:
        # File-backed ledgers only append: a party opens one per message, so reading the
        # whole history back each time would grow with the run.
        if self.signer is not None:
            entry = self._sign(entry)
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
    ) -> TranscriptEntry:
        """Record a message this party sent or received, or a computation it took part in."""
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
    """Merge per-party ledgers into one file ordered by time (only `runs`, if given).
    Each file keeps its own order (a k-way merge, not a sort), so every party's signed
    chain reads in sequence in the merged file too."""
    streams = [[e for e in read_ledger(p) if runs is None or e.run in runs] for p in paths]
    entries = list(heapq.merge(*streams, key=lambda e: e.time))
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
