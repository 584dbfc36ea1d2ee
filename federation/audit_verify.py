"""Verification of signed, hash-chained ledgers (`pv4fad audit verify`).

Every line of a party's ledger carries `chain = {seq, prev, sig}` (and `key` on the first
line of a chain): one chain per recorder and run, each line signed with the recorder's
Ed25519 key and linked to the SHA-256 of the previous line of its chain
(federation/transcript.py). A file is any mix of chains (a party's own ledger, or a
merged one), so verification follows each chain through the file in order and names the
line that breaks it: an edited line fails its signature; a removed line leaves a gap in
`seq` and a `prev` that does not match; a reordered line comes out of sequence; an
appended or inserted line fails the signature (or repeats a sequence number). The end of
a chain is anchored by the coordinator's records of each reply (`ledger_head`), so
removing a party's last lines is detected up to its last reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.transcript import GENESIS, canonical, line_hash


@dataclass
class ChainReport:
    recorder: str
    run: str
    lines: int = 0
    key: str = ""
    key_pinned: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"recorder": self.recorder, "run": self.run, "lines": self.lines,
                "key": self.key, "key_pinned": self.key_pinned, "problems": self.problems,
                "ok": not self.problems}


@dataclass
class VerifyReport:
    files: list[str]
    chains: list[ChainReport]
    problems: list[str]  # problems outside any one chain (unreadable or unsigned lines)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not c.problems for c in self.chains)

    def all_problems(self) -> list[str]:
        return [*self.problems, *(p for c in self.chains for p in c.problems)]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "files": self.files, "problems": self.all_problems(),
                "chains": [c.to_json() for c in self.chains]}

    def render(self) -> str:
        lines = [f"Ledger verification ({len(self.files)} file(s), {len(self.chains)} "
                 f"chain(s)): {'PASS' if self.ok else 'FAIL'}"]
        for c in self.chains:
            status = "ok" if not c.problems else f"{len(c.problems)} problem(s)"
            pin = "pinned key" if c.key_pinned else "key NOT pinned"
            lines.append(f"  {c.recorder:<12} run {c.run:<17} {c.lines:>5} lines  {pin}  "
                         f"{status}")
        lines += [f"  {p}" for p in self.all_problems()[:50]]
        return "\n".join(lines)


def _verify_sig(key_hex: str, line: Mapping[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        key.verify(bytes.fromhex(str(line["chain"]["sig"])), canonical(line, with_sig=False))
        return True
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False


def verify_files(paths: Iterable[Path], pinned: Mapping[str, str] | None = None
                 ) -> VerifyReport:
    """Check every chain in `paths`; `pinned` maps recorder -> Ed25519 public key (hex),
    else each chain's own first-line key is used (and reported as not pinned)."""
    pinned = dict(pinned or {})
    chains: dict[tuple[str, str], ChainReport] = {}
    state: dict[tuple[str, str], tuple[int, str, str]] = {}  # last seq, hash, where
    hashes: dict[tuple[str, str], dict[int, str]] = {}  # every line's hash, by seq
    anchors: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    problems: list[str] = []
    files = [str(p) for p in paths]
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror})")
            continue
        for number, raw in enumerate(text.splitlines(), start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                chain = line["chain"]
                recorder, run = str(line["recorder"]), str(line["run"])
                seq = int(chain["seq"])
            except (ValueError, KeyError, TypeError):
                problems.append(f"{where}: not a signed ledger line (no chain/signature)")
                continue
            key_id = (recorder, run)
            report = chains.setdefault(key_id, ChainReport(recorder, run))
            report.lines += 1
            tag = f"{where} ({recorder}, run {run}, seq {seq})"
            if not report.key:
                if recorder in pinned:
                    report.key, report.key_pinned = pinned[recorder], True
                    if chain.get("key") not in (None, pinned[recorder]):
                        report.problems.append(f"{tag}: chain key differs from the pinned "
                                               f"key of {recorder}")
                else:
                    report.key = str(chain.get("key", ""))
                if not report.key:
                    report.problems.append(f"{tag}: no key to verify with (first line of the "
                                           "chain missing and no pinned key)")
            if report.key and not _verify_sig(report.key, line):
                report.problems.append(f"{tag}: signature does not verify (line edited, "
                                       "or inserted/appended without the party's key)")
            last_seq, last_hash, last_where = state.get(key_id, (-1, GENESIS, "start"))
            if seq == last_seq + 1:
                if chain.get("prev") != last_hash:
                    report.problems.append(f"{tag}: prev hash does not match {last_where} "
                                           "(the line before it was edited or replaced)")
            elif seq <= last_seq:
                report.problems.append(f"{tag}: seq {seq} after seq {last_seq} at "
                                       f"{last_where} (line reordered or duplicated)")
            else:
                missing = (f"seq {last_seq + 1}" if seq == last_seq + 2
                           else f"seq {last_seq + 1}..{seq - 1}")
                report.problems.append(f"{tag}: {missing} missing before it (line removed "
                                       f"after {last_where})")
            digest = line_hash(line)
            hashes.setdefault(key_id, {})[seq] = digest
            if seq > last_seq:
                state[key_id] = (seq, digest, where)
            _collect_anchor(line, where, anchors)
    for (recorder, run), heads in sorted(anchors.items()):
        own = hashes.get((recorder, run))
        if own is None:  # that party's ledger is not among the files: nothing to compare
            continue
        for seq, digest, where in heads:
            if own.get(seq) != digest:
                found = "is missing" if seq not in own else "differs"
                chains[(recorder, run)].problems.append(
                    f"{recorder} (run {run}): line seq {seq} {found}, but the coordinator "
                    f"recorded it as {recorder}'s ledger head at {where} (lines removed "
                    "from the end, or replaced)")
    return VerifyReport(files, sorted(chains.values(), key=lambda c: (c.run, c.recorder)),
                        problems)


def _collect_anchor(line: Mapping[str, Any], where: str,
                    into: dict[tuple[str, str], list[tuple[int, str, str]]]) -> None:
    """The coordinator's record of a reply names the replying party's chain head."""
    details = line.get("details") or {}
    head = str(details.get("ledger_head", "") or "") if isinstance(details, dict) else ""
    if line.get("recorder") == "coordinator" and line.get("direction") == "received" and head:
        seq, _, digest = head.partition(":")
        if seq.isdigit():
            into.setdefault((str(line["sender"]), str(line["run"])), []).append(
                (int(seq), digest, where))
