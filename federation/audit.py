"""Audit of a run from its transcript ledger: what crossed which boundary, and the checks
of the who-may-learn-what table (docs/protocol.md, "What each party learns")."""

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
    p = subparsers.add_parser(
        "audit", help="audit a run: signed ledgers, content checks, DP budget, attacks",
        description="pv4fad audit --out RUN | --ledger FILE... [--html FILE] [--json]; "
                    "pv4fad audit verify FILE... | --out RUN (signed-ledger check only). "
                    "Exit 0: every check passes; 1: a check failed; 2: bad input.")
    p.add_argument("target", nargs="*", metavar="verify FILE",
                   help="`verify` followed by ledger files or run directories: the "
                        "signed-ledger check only")
    p.add_argument("--out", type=Path, dest="run_dir", metavar="RUN",
                   help="the run directory to audit (as `pv4fad simulate --out RUN` wrote it)")
    p.add_argument("--ledger", type=Path, nargs="+", default=[],
                   help="or the parties' own ledger files (a deployment); each party's "
                        "evidence and policy.json are looked for next to its ledger")
    p.add_argument("--evidence", type=Path, nargs="+", default=[],
                   help="more directories holding recorded payload bytes (evidence/)")
    p.add_argument("--keys", type=Path,
                   help="JSON {party: Ed25519 public key hex} pinning the ledger-signing "
                        "keys (default: RUN/parties/ledger_keys.json)")
    p.add_argument("--policy", type=Path,
                   help="reference privacy policy the releases are held against "
                        "(default: the protocol's defaults)")
    p.add_argument("--html", type=Path, help="write a self-contained HTML report here")
    p.add_argument("--no-attacks", action="store_true", help="skip the empirical attacks")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from federation.audit_run import audit, render_text
    from federation.cli import emit

    target = list(args.target)
    if target[:1] == ["verify"]:
        return _verify(target[1:] + ([str(args.run_dir)] if args.run_dir else []), args)
    run_dir = _run_dir(target, args.run_dir)
    if (run_dir is not None) == bool(args.ledger):
        raise Pv4fadError("audit: give a run directory (--out RUN) or --ledger FILE..., "
                          "not both")
    if run_dir is not None and not run_dir.is_dir():
        raise Pv4fadError(f"audit: no run directory at {run_dir}")
    for name in ("keys", "policy"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise Pv4fadError(f"audit: --{name} {path}: no such file")
    result = audit(run_dir=run_dir, ledgers=args.ledger, evidence=args.evidence,
                   keys=args.keys, reference=args.policy, attacks=not args.no_attacks)
    if args.html:
        from federation.audit_report import write_html

        write_html(result, args.html)
        result["html"] = str(args.html)
    emit(result, args.json, render_text(result) + (f"\nreport: {args.html}" if args.html
                                                    else ""))
    return 0 if result["passed"] else 1


def _run_dir(target: list[str], given: Path | None) -> Path | None:
    """The run directory: `--out RUN`, or the old positional spelling (accepted for a
    release, with a warning, as the other renamed options are)."""
    if not target:
        return given
    if len(target) > 1 or given is not None:
        named = target + ([f"--out {given}"] if given is not None else [])
        raise Pv4fadError(f"audit: one run directory expected, got {len(named)}: "
                          f"{' '.join(named)}")
    from federation.cli import warn_renamed

    warn_renamed(f"`pv4fad audit {target[0]}`", f"`pv4fad audit --out {target[0]}`")
    return Path(target[0])


def _verify(paths: list[str], args: argparse.Namespace) -> int:
    from federation.audit_run import LEDGER_KEYS, load_keys
    from federation.audit_verify import verify_files
    from federation.cli import emit

    if not paths:
        raise Pv4fadError("audit verify: give ledger files or run directories "
                          "(pv4fad audit verify FILE... or --out RUN)")
    files: list[Path] = []
    keys = args.keys
    for item in map(Path, paths):
        if item.is_dir():
            ledger = item / "ledger.jsonl"
            if not ledger.is_file():
                raise Pv4fadError(f"audit verify: no ledger.jsonl in {item}")
            files.append(ledger)
            if keys is None and (item / "parties" / LEDGER_KEYS).is_file():
                keys = item / "parties" / LEDGER_KEYS
        elif item.is_file():
            files.append(item)
        else:
            raise Pv4fadError(f"audit verify: no ledger file or run directory at {item}")
    report = verify_files(files, load_keys(keys) if keys else {})
    warnings = [] if keys else ["no pinned ledger keys (--keys): each chain was checked "
                                "against the key on its own first line only"]
    emit({**report.to_json(), "warnings": warnings}, args.json,
         "\n".join([report.render(), *(f"  warning: {w}" for w in warnings)]))
    return 0 if report.ok else 1
