"""`pv4fad simulate`: the whole federation on one machine, train then test.

Each party gets its own partition of the challenge layout and its own state directory
under RUN_DIR/parties/<id>; the run writes RUN_DIR/predictions.csv, summary.json and the
merged ledger.jsonl. A later `--stage test` on the same RUN_DIR scores from saved state.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from federation.audit import privacy_checks, traffic
from federation.config import INFERENCE_MODES, ProtocolConfig
from federation.errors import Pv4fadError
from federation.features import REPORTED_STATUSES
from federation.messages import COORDINATOR, PNS_ID
from federation.policy import PrivacyPolicy
from federation.transcript import (
    SIGNING_KEY_FILE,
    load_signing_key,
    merge_ledgers,
    public_key_hex,
)

# Under RUN_DIR/parties: every ledger-signing public key, as an auditor pins them.
LEDGER_KEYS = "ledger_keys.json"

STAGES = ("train", "test")


def simulate(
    run_dir: Path,
    *,
    data_root: Path | None = None,
    scenario: str | None = None,
    config: ProtocolConfig | None = None,
    stages: tuple[str, ...] = STAGES,
    faults: dict[str, str] | None = None,
    bank_policy: PrivacyPolicy | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the given stages; returns the summary (also written to RUN_DIR/summary.json)."""
    from clients.app import build_client_app
    from clients.party import NodeSettings
    from federation.cli import progress
    from federation.simulation import run_federation
    from server.coordinator import Coordinator

    run_dir = Path(run_dir)
    data_root, scenario, config = _resolve_run(run_dir, data_root, scenario, config, stages)
    parties = _parties(data_root, scenario)
    policies = prepare_parties(run_dir / "parties", parties, config, bank_policy)
    layout = {
        i: NodeSettings(role="pns" if pid == PNS_ID else "bank", party_id=pid,
                        data_root=str(data_root), scenario=scenario,
                        state_dir=str(run_dir / "parties" / pid), policy=str(policies[pid]),
                        fail_at=(faults or {}).get(pid, "")).to_node_config()
        for i, pid in enumerate(parties)
    }
    progress(f"simulating {scenario} ({len(parties) - 1} bank clients) from {data_root}")
    started = time.perf_counter()

    def server_main(grid: Any, context: Any) -> list[Any]:
        coordinator = Coordinator(grid, len(parties), run_dir, config, progress)
        return [getattr(coordinator, stage)() for stage in stages]

    reports = run_federation(server_main, build_client_app(layout), len(parties),
                             verbose=verbose)
    wall = time.perf_counter() - started
    saved = json.loads((run_dir / "run.json").read_text())
    saved["stage_run_ids"] = saved.get("stage_run_ids", {}) | {r.stage: r.run_id
                                                               for r in reports}
    (run_dir / "run.json").write_text(json.dumps(saved, indent=1))
    return _summarise(run_dir, scenario, data_root, config, reports, wall,
                      set(saved["stage_run_ids"].values()))


def _resolve_run(run_dir: Path, data_root: Path | None, scenario: str | None,
                 config: ProtocolConfig | None, stages: tuple[str, ...]
                 ) -> tuple[Path, str, ProtocolConfig]:
    """Settings of a run: given ones, else those saved by its training stage."""
    from federation.data.generate import default_data_dir
    from federation.data.loader import list_scenarios

    saved_path = run_dir / "run.json"
    if "train" not in stages:
        if not saved_path.exists():
            raise Pv4fadError(f"{run_dir} holds no trained run (no run.json); "
                              "run the train stage first")
        saved = json.loads(saved_path.read_text())
        data_root = data_root or Path(saved["data_root"])
        scenario = scenario or saved["scenario"]
        config = config or ProtocolConfig(**saved["config"])
    data_root = Path(data_root) if data_root else default_data_dir()
    scenarios = list_scenarios(data_root)
    scenario = scenario or scenarios[0]
    if scenario not in scenarios:
        raise Pv4fadError(f"scenario {scenario!r} is not in {data_root / 'scenarios.txt'} "
                          f"(found: {', '.join(scenarios)})")
    config = config or ProtocolConfig()
    if "train" in stages:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved_path.write_text(json.dumps({"data_root": str(data_root), "scenario": scenario,
                                          "config": asdict(config)}, indent=1))
    return data_root, scenario, config


def prepare_parties(parties_dir: Path, parties: list[str], config: ProtocolConfig,
                    bank_policy: PrivacyPolicy | None = None) -> dict[str, Path]:
    """What each party does before a deployment, done here for all of them: an X25519
    identity of its own (kept if it exists), and a policy that pins every other party's
    public key (the out-of-band exchange). A simulation's operator is every party, so the
    banks' limits allow what it asks for unless `bank_policy` sets them."""
    from crypto.channel import IDENTITY_FILE, E2EIdentity

    publics = {}
    for pid in parties:
        path = parties_dir / pid / IDENTITY_FILE
        if not path.exists():
            E2EIdentity.generate().save(path)
        publics[pid] = E2EIdentity.load(path).public_bytes().hex()
    limits = bank_policy or PrivacyPolicy(
        allow_plaintext=config.plaintext, max_training_epsilon=config.epsilon,
        max_training_delta=config.delta, status_epsilon=config.inference_epsilon,
        max_rows_per_account=config.max_rows_per_account,
        lifetime_training_epsilon=max(PrivacyPolicy.lifetime_training_epsilon,
                                      5 * config.epsilon))
    # Each party's (and the coordinator's) Ed25519 ledger-signing key; the public halves
    # are what an auditor pins to verify the signed ledgers (`pv4fad audit verify`).
    signing = {pid: parties_dir / pid / SIGNING_KEY_FILE for pid in parties}
    signing[COORDINATOR] = parties_dir.parent / COORDINATOR / SIGNING_KEY_FILE
    (parties_dir / LEDGER_KEYS).write_text(json.dumps(
        {pid: public_key_hex(load_signing_key(path)) for pid, path in signing.items()},
        indent=1, sort_keys=True) + "\n")
    out = {}
    for pid in parties:
        pins = {p: key for p, key in publics.items() if p != pid}
        own = limits if pid != PNS_ID else PrivacyPolicy(allow_plaintext=config.plaintext)
        out[pid] = parties_dir / pid / "policy.json"
        replace(own, pinned_keys=pins).save(out[pid])
    return out


def _parties(data_root: Path, scenario: str) -> list[str]:
    from federation.data.loader import partitions

    ids = sorted(partitions(data_root, scenario, "train"))
    if PNS_ID not in ids:
        raise Pv4fadError(f"{data_root / scenario / 'train' / 'partitions.json'} names no "
                          f"'{PNS_ID}' client")
    return [PNS_ID] + [i for i in ids if i != PNS_ID]


def _summarise(run_dir: Path, scenario: str, data_root: Path, config: ProtocolConfig,
               reports: list[Any], wall: float, run_ids: set[str]) -> dict[str, Any]:
    ledgers = sorted(run_dir.glob("parties/*/ledger.jsonl")) + [
        run_dir / "coordinator" / "ledger.jsonl"]
    # Party ledgers keep every run made in this directory; the run's own view is its
    # train and test stages (a retrain replaces the train stage).
    entries = merge_ledgers([p for p in ledgers if p.exists()], run_dir / "ledger.jsonl",
                            run_ids)
    predictions = run_dir / "parties" / PNS_ID / "test" / "predictions.csv"
    if predictions.exists():
        shutil.copyfile(predictions, run_dir / "predictions.csv")
    summary: dict[str, Any] = {
        "scenario": scenario, "data_root": str(data_root), "config": asdict(config),
        "wall_seconds": round(wall, 2), "stages": {}, "traffic_bytes": traffic(entries),
        "privacy_checks": {k: len(v) for k, v in privacy_checks(entries).items()},
        "peak_rss_mib": _peak_memory(reports),
    }
    for report in reports:
        pns = report.public.get(PNS_ID, {})
        summary["stages"][report.stage] = {
            "run_id": report.run_id,
            "phase_seconds": {k: round(v, 2) for k, v in report.phase_seconds.items()},
            "failed_parties": report.failed,
            "results": {k.split(".", 1)[1]: v for k, v in pns.items()
                        if k.startswith(("aggregate.", "finish.", "linkage.unrouted"))
                        and not k.endswith((".pid", ".peak_rss_mib"))},
        }
        if report.stage == "test":
            summary["inference_epsilon_per_account"] = _bank_max(
                report, "epsilon_per_account_max")
            summary["questions_per_account_max"] = _bank_max(
                report, "questions_per_account_max")
    summary.update(_headline(summary))
    summary["privacy"] = _privacy(summary, config)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def _bank_max(report: Any, key: str) -> float | None:
    """The largest value banks reported under `key` in an inference phase."""
    return max((v for party in report.public.values() for k, v in party.items()
                if k in (f"status.{key}", f"label.{key}")), default=None)


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    train = summary["stages"].get("train", {}).get("results", {})
    test = summary["stages"].get("test", {}).get("results", {})
    return {
        "auprc": test.get("auprc"), "auprc_pns_only": test.get("auprc_pns_only"),
        "precision": test.get("precision"), "recall": test.get("recall"),
        "training_epsilon": train.get("training_epsilon"),
        "training_delta": train.get("training_delta"),
    }


def _privacy(summary: dict[str, Any], config: ProtocolConfig) -> dict[str, Any]:
    """What one bank account can lose, per stage and composed.

    Training (the noisy joint counts) and inference (the reported statuses, or the flags
    computed from them) are composed by the accountant for the most-asked account. Both
    derive from the bank's randomized-response answers, drawn once per question, so
    whatever a PNS or coordinator that deviates does, an account cannot lose more than
    status epsilon times its number of distinct questions (`bound_against_any_deviation`).
    """
    from crypto.accountant import PrivacyAccountant, Release
    from federation.config import training_noise

    questions = summary.get("questions_per_account_max")
    out: dict[str, Any] = {"training_epsilon": summary.get("training_epsilon"),
                           "status_epsilon_per_question": config.inference_epsilon,
                           "questions_per_account_max": questions}
    if config.inference_epsilon is None or not questions:
        return out
    noise = training_noise(config)
    accountant = PrivacyAccountant()
    if summary.get("training_epsilon") is not None:
        accountant.record(Release(
            mechanism="skellam", sensitivity=noise.l2, l1_sensitivity=noise.l1,
            noise_scale=noise.variance, releasing_party="banks", released="joint counts"))
    accountant.record(Release(
        mechanism="randomized_response", sensitivity=1.0, noise_scale=config.inference_epsilon,
        releasing_party="banks", released="status answers", count=int(questions),
        buckets=config.n_statuses))
    out["per_account_epsilon_composed"] = accountant.epsilon(config.delta)
    out["bound_against_any_deviation"] = int(questions) * config.inference_epsilon
    out["per_account_epsilon"] = min(out["per_account_epsilon_composed"],
                                     out["bound_against_any_deviation"])
    return out


def _peak_memory(reports: list[Any]) -> dict[str, float]:
    """Largest peak RSS per process (party processes by pid, plus the coordinator's)."""
    by_pid: dict[str, float] = {}
    for report in reports:
        for values in report.public.values():
            for key, value in values.items():
                if key.endswith(".peak_rss_mib"):
                    pid = f"pid {values.get(key.replace('peak_rss_mib', 'pid'))}"
                    by_pid[pid] = max(by_pid.get(pid, 0.0), float(value))
    by_pid["coordinator"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return by_pid


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simulate", help="run the private federated protocol on one "
                              "machine (train, then test)")
    p.add_argument("--data", type=Path, help="challenge-layout data (default: embedded data)")
    p.add_argument("--scenario", help="scenario name from scenarios.txt (default: first)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--stage", choices=("all", *STAGES), default="all")
    p.add_argument("--epsilon", type=float, default=ProtocolConfig.epsilon)
    p.add_argument("--delta", type=float, default=ProtocolConfig.delta)
    p.add_argument("--inference-epsilon", type=_optional_float,
                   default=ProtocolConfig.inference_epsilon, metavar="E|none",
                   help="output privacy per beneficiary identity (none: exact scores)")
    p.add_argument("--cell-depth", type=int, default=ProtocolConfig.cell_depth,
                   help="depth of the PNS's tree of status-table cells (0: one cell)")
    p.add_argument("--status-detail", choices=sorted(REPORTED_STATUSES),
                   default=ProtocolConfig.status_detail,
                   help="what a bank reports per row: ok / not ok, or the five statuses")
    p.add_argument("--max-rows-per-account", type=int,
                   default=ProtocolConfig.max_rows_per_account)
    p.add_argument("--inference-mode", choices=INFERENCE_MODES,
                   default=ProtocolConfig.inference_mode,
                   help="scores: the PNS gets each row's randomized status and scores it; "
                        "labels: it gets only a flag per row (two-party CrypTen comparison)")
    p.add_argument("--label-threshold", type=float, default=ProtocolConfig.label_threshold,
                   help="label mode: flag a row when its anomaly probability exceeds this")
    p.add_argument("--plaintext", action="store_true",
                   help="switch the cryptography off (only to measure its cost)")
    p.add_argument("--timeout", type=float, default=ProtocolConfig.timeout_s,
                   help="seconds a party may take per phase before it counts as dead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fail", action="append", default=[], metavar="PARTY:PHASE[:hang]",
                   help="inject a fault (resilience testing)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _cmd(args: argparse.Namespace) -> int:
    from federation.cli import emit

    stages = STAGES if args.stage == "all" else (args.stage,)
    config = None
    if "train" in stages:
        config = ProtocolConfig(
            epsilon=args.epsilon, delta=args.delta, inference_epsilon=args.inference_epsilon,
            cell_depth=args.cell_depth, status_detail=args.status_detail,
            max_rows_per_account=args.max_rows_per_account,
            plaintext=args.plaintext, seed=args.seed, timeout_s=args.timeout,
            inference_mode=args.inference_mode, label_threshold=args.label_threshold)
    elif (args.out / "run.json").exists():
        # Scoring again: how the PNS receives the banks' statuses is an inference choice.
        saved = ProtocolConfig(**json.loads((args.out / "run.json").read_text())["config"])
        config = replace(saved, inference_mode=args.inference_mode,
                         label_threshold=args.label_threshold)
    faults = dict(f.split(":", 1) for f in args.fail)
    summary = simulate(args.out, data_root=args.data, scenario=args.scenario, config=config,
                       stages=stages, faults=faults, verbose=args.verbose)
    emit(summary, args.json, _human(summary, args.out))
    return 0


def _human(summary: dict[str, Any], run_dir: Path) -> str:
    lines = [f"scenario {summary['scenario']}: wall {summary['wall_seconds']} s"]
    if summary.get("auprc") is not None:
        lines.append(f"AUPRC {summary['auprc']:.4f} (PNS-only forest "
                     f"{summary['auprc_pns_only']:.4f})")
    if summary.get("precision") is not None:
        lines.append(f"flags: precision {summary['precision']:.3f}, recall "
                     f"{summary['recall']:.3f} (label mode: the PNS received flags only)")
    if summary.get("training_epsilon") is not None:
        lines.append(f"training privacy: epsilon {summary['training_epsilon']:.3f} at delta "
                     f"{summary['training_delta']:g}")
    for stage, info in summary["stages"].items():
        for party, reason in info["failed_parties"].items():
            lines.append(f"{stage}: party {party} failed ({reason}); degraded mode")
    privacy = summary.get("privacy", {})
    if privacy.get("per_account_epsilon_composed") is not None:
        asked = privacy["questions_per_account_max"]
        lines.append(f"inference privacy: randomized response at epsilon "
                     f"{summary['config']['inference_epsilon']:g} per question, each answer "
                     f"kept for life; the most-asked account ({asked} questions) loses at "
                     f"most epsilon {privacy['per_account_epsilon']:.2f}, training included, "
                     "whatever a party does")
    elif "test" in summary["stages"]:
        lines.append("inference privacy: off (exact statuses released to the PNS)")
    failed = [k for k, v in summary["privacy_checks"].items() if v]
    lines.append("privacy checks: " + ("all pass" if not failed else "FAIL " + ", ".join(failed)))
    lines.append(f"outputs in {run_dir}: predictions.csv, summary.json, ledger.jsonl")
    return "\n".join(lines)
