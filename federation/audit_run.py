"""The whole audit of a run or of a deployment's collected ledgers, as one result object:
ledger verification, content checks, the DP budget, the empirical attacks, the traffic.
`pv4fad audit` prints it, writes it as JSON (`--json`) and as an HTML report (`--html`)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.audit import releases, traffic
from federation.audit_checks import (
    RunContext,
    dp_budget,
    per_account_epsilon,
    run_checks,
)
from federation.audit_verify import verify_files
from federation.errors import Pv4fadError
from federation.evidence import EVIDENCE_DIR, EvidenceStore
from federation.messages import COORDINATOR, PNS_ID
from federation.policy import PrivacyPolicy
from federation.transcript import MESSAGE_DIRECTIONS, TranscriptEntry, read_ledger

LEDGER_KEYS = "ledger_keys.json"


def load_keys(path: Path) -> dict[str, str]:
    try:
        keys = json.loads(Path(path).read_text())
    except OSError as exc:
        raise Pv4fadError(f"audit: cannot read ledger keys {path} ({exc.strerror})") from exc
    except ValueError as exc:
        raise Pv4fadError(f"audit: ledger keys {path} are not valid JSON ({exc})") from exc
    if not isinstance(keys, dict) or not all(
            isinstance(v, str) and len(v) == 64 for v in keys.values()):
        raise Pv4fadError(f"audit: ledger keys {path} must map each party to its Ed25519 "
                          "public key (64 hex digits)")
    return keys


def _read(paths: Sequence[Path]) -> list[TranscriptEntry]:
    out = []
    for path in paths:
        try:
            out += list(read_ledger(path))
        except (ValueError, TypeError) as exc:
            raise Pv4fadError(f"audit: {path} is not a ledger ({exc}); `pv4fad audit verify "
                              f"{path}` names the bad line") from exc
    return out


def _policies(dirs: Sequence[Path]) -> dict[str, PrivacyPolicy]:
    out = {}
    for d in dirs:
        if (d / "policy.json").is_file():
            out[d.name] = PrivacyPolicy.load(d / "policy.json")
    return out


def traffic_flows(entries: Sequence[TranscriptEntry]) -> list[dict[str, Any]]:
    """Who sent what to whom per phase (bytes, messages), by the senders' own records."""
    flows: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        if e.direction == "sent" and e.sender != e.receiver:
            stage, _, phase = e.message_type.partition(".")
            flows[(stage, phase or e.phase, e.sender, e.receiver)][0] += 1
            flows[(stage, phase or e.phase, e.sender, e.receiver)][1] += e.nbytes
        elif e.direction == "exchanged" and e.sender == e.recorder:
            stage, _, phase = e.message_type.partition(".")
            flows[(stage, phase or e.phase, e.sender, e.receiver)][0] += 1
            flows[(stage, phase or e.phase, e.sender, e.receiver)][1] += e.nbytes
    from federation.messages import PHASES

    def order(key: tuple[str, str, str, str]) -> tuple[Any, ...]:
        stage, phase = key[0], key[1]
        return ({"train": 0, "test": 1}.get(stage, 2), stage,
                PHASES.index(phase) if phase in PHASES else len(PHASES), *key[1:])

    return [{"stage": k[0], "phase": k[1], "sender": k[2], "receiver": k[3], "messages": v[0],
             "bytes": v[1]} for k, v in sorted(flows.items(), key=lambda kv: order(kv[0]))]


def parties_table(entries: Sequence[TranscriptEntry], summary: dict[str, Any]
                  ) -> list[dict[str, Any]]:
    """Each party: role, data size (from the run's data, where the auditor has it), lines
    in the ledger, bytes sent and received."""
    sizes: dict[str, int] = {}
    if summary.get("data_root") and summary.get("scenario"):
        try:
            import pandas as pd

            from federation.data.loader import partitions

            for stage in ("train", "test"):
                for pid, files in partitions(summary["data_root"], summary["scenario"],
                                             stage).items():
                    sizes[f"{pid}/{stage}"] = sum(len(pd.read_csv(f, usecols=[0]))
                                                  for f in files)
        except (Pv4fadError, OSError, ValueError):
            sizes = {}
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        row = rows.setdefault(e.recorder, {
            "party": e.recorder, "role": ("payment network" if e.recorder == PNS_ID else
                                          "coordinator" if e.recorder == COORDINATOR
                                          else "bank"),
            "ledger_lines": 0, "bytes_sent": 0, "bytes_received": 0})
        row["ledger_lines"] += 1
        if e.direction in MESSAGE_DIRECTIONS:
            key = "bytes_sent" if e.direction in ("sent", "exchanged") else "bytes_received"
            row[key] += e.nbytes
    for pid, row in rows.items():
        unit = "transactions" if pid == PNS_ID else "account records"
        row["data"] = {stage: f"{sizes[f'{pid}/{stage}']:,} {unit}" for stage in ("train", "test")
                       if f"{pid}/{stage}" in sizes}
    return sorted(rows.values(), key=lambda r: (r["role"] != "payment network",
                                               r["role"] == "coordinator", r["party"]))


def composed_epsilon(entries: Sequence[TranscriptEntry], delta: float) -> dict[str, float]:
    """Each party's training releases composed (RDP), at the run's delta."""
    from crypto.accountant import PrivacyAccountant, Release

    known = set(Release.__dataclass_fields__)
    per: dict[str, PrivacyAccountant] = defaultdict(PrivacyAccountant)
    for e in entries:
        if e.direction == "release" and e.details.get("mechanism") != "randomized_response":
            try:
                per[e.recorder].record(Release(**{k: v for k, v in e.details.items()
                                                  if k in known}))
            except (Pv4fadError, TypeError):
                continue
    return {p: a.epsilon(delta) for p, a in sorted(per.items())}


def audit(run_dir: Path | None = None, ledgers: Sequence[Path] = (),
          evidence: Sequence[Path] = (), keys: Path | None = None,
          reference: Path | None = None, attacks: bool = True) -> dict[str, Any]:
    """Audit a run directory, or ledger files collected from a deployment."""
    started = time.perf_counter()
    summary: dict[str, Any] = {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        ledger = run_dir / "ledger.jsonl"
        from federation.audit_attacks import MIA_SCORES

        if not ledger.is_file() and not (run_dir / MIA_SCORES).is_file():
            raise Pv4fadError(f"audit: no ledger at {ledger} (nor {MIA_SCORES}): is "
                              f"{run_dir} a run directory?")
        # An LLM evaluation directory may hold only membership scores.
        ledger_files = [ledger] if ledger.is_file() else []
        party_dirs = sorted(p for p in (run_dir / "parties").glob("*") if p.is_dir())
        store_roots = [d / EVIDENCE_DIR for d in party_dirs]
        if (run_dir / "summary.json").is_file():
            summary = json.loads((run_dir / "summary.json").read_text())
        keys = keys or (run_dir / "parties" / LEDGER_KEYS
                        if (run_dir / "parties" / LEDGER_KEYS).is_file() else None)
    else:
        missing = [str(p) for p in ledgers if not Path(p).is_file()]
        if missing:
            raise Pv4fadError(f"audit: no ledger file at {', '.join(missing)}")
        ledger_files = [Path(p) for p in ledgers]
        party_dirs = [p.parent for p in ledger_files]
        store_roots = [*(Path(e) for e in evidence), *(d / EVIDENCE_DIR for d in party_dirs)]
    pinned = load_keys(keys) if keys else {}
    verification = verify_files(ledger_files, pinned)
    warnings = []
    if not pinned and ledger_files:
        # Not a failure (the chains may still be intact), but nothing then ties them to the
        # parties: the report says so beside every chain.
        warnings.append("no pinned ledger keys given (--keys): each chain was checked "
                        "against the key on its own first line only")
    entries = sorted(_read(ledger_files), key=lambda e: e.time)
    config = summary.get("config", {})
    from federation.config import ProtocolConfig

    base = ProtocolConfig()
    delta = float(config.get("delta", base.delta))
    status_detail = config.get("status_detail", base.status_detail)
    n_statuses = 2 if status_detail == "coarse" else ProtocolConfig(
        status_detail=status_detail).n_statuses
    policies = _policies(party_dirs)
    ctx = RunContext(store=EvidenceStore(store_roots), policies=policies,
                     reference=PrivacyPolicy.load(reference) if reference else PrivacyPolicy(),
                     delta=delta, n_statuses=n_statuses,
                     claimed={k: summary[k] for k in ("training_epsilon",) if k in summary})
    checks = run_checks(entries, ctx)
    budget = dp_budget(entries, ctx)
    accounts = per_account_epsilon(entries, ctx.store, policies)
    result: dict[str, Any] = {
        "source": {"run_dir": str(run_dir) if run_dir else None,
                   "ledgers": [str(p) for p in ledger_files],
                   "scenario": summary.get("scenario"), "config": config,
                   "reference_policy": str(reference) if reference else "protocol defaults"},
        "parties": parties_table(entries, summary),
        # `traffic`, `releases` and `checks` (name -> violations) keep the shape earlier
        # versions printed; `flows` and `check_details` carry the rest.
        "traffic": traffic(entries),
        "flows": traffic_flows(entries),
        "releases": releases(entries),
        "ledger": {**verification.to_json(), "warnings": warnings},
        "checks": {c.name: c.violations for c in checks},
        "check_details": [c.to_json() for c in checks],
        "dp": {"delta": delta, "releases": budget,
               "composed_training_epsilon": composed_epsilon(entries, delta),
               "per_account": accounts},
    }
    if attacks:
        from federation.audit_attacks import run_attacks

        result["attacks"] = run_attacks(entries, ctx, run_dir, summary)
    failed = [c.name for c in checks if not c.passed]
    if not verification.ok:
        failed.insert(0, "ledger_verification")
    if attacks:
        failed += [f"attack:{a['name']}" for a in result["attacks"]
                   if a.get("within_bound") is False]
    result["failed"] = failed
    result["passed"] = not failed
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def render_text(result: dict[str, Any]) -> str:
    lines = [f"Privacy audit: {'PASS' if result['passed'] else 'FAIL'}"
             f" ({result['seconds']:.1f} s)"]
    ledger = result["ledger"]
    lines.append(f"Ledger: {len(ledger['chains'])} signed chain(s), "
                 f"{'verified' if ledger['ok'] else 'NOT verified'}")
    lines += [f"  {p}" for p in [*ledger["problems"][:20], *ledger["warnings"]]]
    lines.append("Checks:")
    for c in result["check_details"]:
        lines.append(f"  {'PASS' if c['passed'] else 'FAIL'} {c['title']}"
                     f"  [{'; '.join(c['evidence'])}]")
        lines += [f"      {v}" for v in c["violations"][:10]]
    lines.append("DP releases (epsilon recomputed from the mechanism parameters):")
    for r in result["dp"]["releases"]:
        lines.append(f"  {r['party']:<8} {r['phase']:<10} {r['mechanism']:<20} "
                     f"epsilon {r['epsilon']:.4g}"
                     + (f" at delta {r['delta']:g}" if r["delta"] else " (pure)"))
    acc = result["dp"]["per_account"]
    if acc["values"]:
        lines.append(f"  per account at inference: worst {acc['max']:g} over "
                     f"{len(acc['values'])} accounts")
    for a in result.get("attacks", []):
        bound = a.get("bound")
        lines.append(f"Attack {a['title']}: {a['summary']}"
                     + (f" (bound {bound})" if bound is not None else ""))
    if result["failed"]:
        lines.append(f"Failed: {', '.join(result['failed'])}")
    return "\n".join(lines)
