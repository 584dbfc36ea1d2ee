"""Audit of a run from its transcript ledger: what crossed which boundary, and the checks
of the who-may-learn-what table (design.md §4)."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from federation.errors import Pv4fadError
from federation.messages import COORDINATOR, PNS_ID
from federation.transcript import (
    MESSAGE_DIRECTIONS,
    PayloadClass,
    TranscriptEntry,
    read_ledger,
)

# What the PNS may receive from a bank: nothing it can read row by row.
PNS_MAY_RECEIVE = {PayloadClass.CIPHERTEXT, PayloadClass.SECRET_SHARE, PayloadClass.DP_NOISED,
                   PayloadClass.PUBLIC}
COORDINATOR_MAY_RECEIVE = {PayloadClass.CIPHERTEXT, PayloadClass.PUBLIC}


def privacy_checks(entries: Iterable[TranscriptEntry]) -> dict[str, list[str]]:
    """Each check's violations (empty lists mean the check passed)."""
    entries = list(entries)
    checks: dict[str, list[str]] = {
        "no_plaintext_crosses_a_boundary": [],
        "pns_receives_only_protected_bank_values": [],
        "coordinator_receives_nothing_it_can_read": [],
    }
    for e in entries:
        if e.direction not in MESSAGE_DIRECTIONS or e.sender == e.receiver:
            continue
        where = f"{e.message_type} {e.sender}->{e.receiver} (recorded by {e.recorder})"
        classes = {PayloadClass(c) for c in e.fields.values()}
        bad = sorted(f for f, c in e.fields.items() if c == PayloadClass.PLAINTEXT)
        if bad:
            checks["no_plaintext_crosses_a_boundary"].append(f"{where}: {', '.join(bad)}")
        from_bank = (e.direction == "received" and e.sender not in (PNS_ID, COORDINATOR)) or (
            e.direction == "exchanged" and e.receiver not in (PNS_ID, COORDINATOR))
        if e.recorder == PNS_ID and from_bank and not classes <= PNS_MAY_RECEIVE:
            checks["pns_receives_only_protected_bank_values"].append(
                f"{where}: {sorted(c.value for c in classes - PNS_MAY_RECEIVE)}")
        if (e.recorder == COORDINATOR and e.direction == "received"
                and not classes <= COORDINATOR_MAY_RECEIVE):
            checks["coordinator_receives_nothing_it_can_read"].append(
                f"{where}: {sorted(c.value for c in classes - COORDINATOR_MAY_RECEIVE)}")
    return checks


def traffic(entries: Iterable[TranscriptEntry]) -> dict[str, dict[str, int]]:
    """Bytes each party sent and received through the coordinator, and exchanged directly
    with another party (two-party computation, both ways), by its own records."""
    out: dict[str, dict[str, int]] = defaultdict(
        lambda: {"sent": 0, "received": 0, "exchanged": 0})
    for e in entries:
        if e.direction in MESSAGE_DIRECTIONS and e.recorder != COORDINATOR:
            out[e.recorder][e.direction] += e.nbytes
    return dict(out)


def releases(entries: Iterable[TranscriptEntry]) -> list[dict[str, Any]]:
    return [dict(e.details, party=e.recorder, phase=e.phase) for e in entries
            if e.direction == "release"]


def render(entries: list[TranscriptEntry]) -> str:
    """A human-readable audit: flows by boundary and payload class, DP releases, checks."""
    flows: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        if e.direction == "sent":
            key = (e.message_type, e.sender, e.receiver,
                   ",".join(sorted(f"{k}:{v}" for k, v in e.fields.items())))
            flows[key][0] += 1
            flows[key][1] += e.nbytes
    lines = ["Messages by boundary (sender's records):",
             f"  {'message':<20} {'from':<12} {'to':<12} {'n':>4} {'bytes':>12}  fields"]
    for (mtype, src, dst, fields), (n, nbytes) in sorted(flows.items()):
        lines.append(f"  {mtype:<20} {src:<12} {dst:<12} {n:>4} {nbytes:>12,}  {fields}")
    lines.append("DP releases:")
    for r in releases(entries):
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in sorted(r.items())))
    lines.append("Privacy checks:")
    for name, bad in privacy_checks(entries).items():
        lines.append(f"  {'PASS' if not bad else 'FAIL'} {name}"
                     + "".join(f"\n      {b}" for b in bad[:10]))
    return "\n".join(lines)


def load_run_ledger(run_dir: Path) -> list[TranscriptEntry]:
    path = Path(run_dir) / "ledger.jsonl"
    if not path.exists():
        raise Pv4fadError(f"no ledger at {path}: is {run_dir} a run directory?")
    return list(read_ledger(path))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audit", help="show what crossed which boundary in a run")
    p.add_argument("run_dir", type=Path, nargs="?",
                   help="a run directory (its merged ledger.jsonl)")
    p.add_argument("--ledger", type=Path, nargs="+", default=[],
                   help="or the parties' own ledger files, merged here (a deployment)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from federation.cli import emit

    if bool(args.run_dir) == bool(args.ledger):
        raise Pv4fadError("audit: give a run directory or --ledger FILE..., not both")
    if args.run_dir:
        entries = load_run_ledger(args.run_dir)
    else:
        missing = [str(p) for p in args.ledger if not p.is_file()]
        if missing:
            raise Pv4fadError(f"audit: no ledger file at {', '.join(missing)}")
        entries = sorted((e for p in args.ledger for e in read_ledger(p)), key=lambda e: e.time)
    checks = privacy_checks(entries)
    emit({"checks": checks, "traffic": traffic(entries), "releases": releases(entries)},
         args.json, render(entries))
    return 0 if not any(checks.values()) else 1
