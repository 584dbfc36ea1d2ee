"""`pv4fad simulate`: the whole federation on one machine, train then test.

Each party gets its own partition of the challenge layout and its own state directory
under RUN_DIR/parties/<id>; the run writes RUN_DIR/predictions.csv, summary.json and the
merged ledger.jsonl. A later `--stage test` on the same RUN_DIR scores from saved state.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from federation.config import INFERENCE_MODES, REPORTED_STATUSES, ProtocolConfig
from federation.errors import Pv4fadError
from federation.messages import COORDINATOR, PHASES, PNS_ID
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
    pr_curve: bool = False,
) -> dict[str, Any]:
    """Run the given stages; returns the summary (also written to RUN_DIR/summary.json).
    With `pr_curve`, a test stage on labelled data also writes RUN_DIR/pr_curve.png."""
    from clients.app import build_client_app
    from federation.cli import progress
    from federation.simulation import run_federation

    run = prepare_run(Path(run_dir), data_root, scenario, config, stages, faults, bank_policy)
    progress(f"simulating {run.scenario} ({len(run.parties) - 1} bank clients) from "
             f"{run.data_root}")
    started = time.perf_counter()
    reports = run_federation(lambda grid, context: serve(grid, run),
                             build_client_app(run.layout), len(run.parties), verbose=verbose)
    return finish_run(run, reports, time.perf_counter() - started, pr_curve=pr_curve)


@dataclass(frozen=True)
class PreparedRun:
    """A run's resolved settings, its parties and each party's node settings."""

    run_dir: Path
    data_root: Path
    scenario: str
    config: ProtocolConfig
    stages: tuple[str, ...]
    parties: list[str]
    layout: dict[int, dict[str, str]]
    saved: dict[str, Any] | None  # a test stage alone: what its training saved


def prepare_run(run_dir: Path, data_root: Path | None, scenario: str | None,
                config: ProtocolConfig | None, stages: tuple[str, ...],
                faults: dict[str, str] | None = None,
                bank_policy: PrivacyPolicy | None = None) -> PreparedRun:
    """What a simulation's operator does before the parties start: resolve the settings,
    mark a training as under way, give every party its identity and policy, and write the
    parties' node settings to RUN_DIR/parties/layout.json (where `flwr run`'s simulated
    SuperNodes read them, clients/app.py)."""
    from clients.party import NodeSettings

    if run_dir.exists() and not run_dir.is_dir():
        raise Pv4fadError(f"--out {run_dir} is a file; a run directory is a directory "
                          "(new, or one a previous simulate wrote)")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise Pv4fadError(f"stages must be among {', '.join(STAGES)}, got {list(stages)}")
    saved = None if "train" in stages else saved_run(run_dir)
    data_root, scenario, config = _resolve_run(run_dir, data_root, scenario, config, saved)
    parties = _parties(data_root, scenario)
    if "train" in stages:
        # Until training has finished, run.json keeps describing the previous model (if
        # any) and this marker says the party state is being replaced: a test stage
        # refuses to score from a directory in that state.
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / TRAINING_MARKER, json.dumps(
            {"scenario": scenario, "data_root": str(data_root), "config": asdict(config),
             "started": time.time()}, indent=1))
    policies = prepare_parties(run_dir / "parties", parties, config, bank_policy)
    layout = {
        i: NodeSettings(role="pns" if pid == PNS_ID else "bank", party_id=pid,
                        data_root=str(data_root), scenario=scenario,
                        state_dir=str(run_dir / "parties" / pid), policy=str(policies[pid]),
                        fail_at=(faults or {}).get(pid, "")).to_node_config()
        for i, pid in enumerate(parties)
    }
    _write_atomic(run_dir / "parties" / LAYOUT_FILE, json.dumps(layout, indent=1))
    return PreparedRun(run_dir, data_root, scenario, config, tuple(stages), parties, layout,
                       saved)


def serve(grid: Any, run: PreparedRun) -> list[Any]:
    """The coordinator's side of a prepared run (a ServerApp's main)."""
    from federation.cli import progress
    from federation.progress import phase_bar
    from server.coordinator import Coordinator

    coordinator = Coordinator(grid, len(run.parties), run.run_dir, run.config, progress,
                              expected=_last_phase_seconds(run.run_dir), phase_bar=phase_bar)
    reports = []
    for stage in run.stages:
        reports.append(getattr(coordinator, stage)())
        if stage == "train":
            _commit_training(run.run_dir, run.data_root, run.scenario, run.config,
                             reports[-1])
    return reports


def _last_phase_seconds(run_dir: Path) -> dict[str, dict[str, float]]:
    """Phase times of the run this directory last completed (estimates for progress)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return {stage: info["phase_seconds"] for stage, info in summary["stages"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def finish_run(run: PreparedRun, reports: list[Any], wall: float, *,
               pr_curve: bool = False) -> dict[str, Any]:
    """The run's summary, merged ledger and predictions (and the figure), each written in
    one step."""
    from federation.cli import progress

    run_dir, scenario, data_root, config = run.run_dir, run.scenario, run.data_root, run.config
    saved, stages = run.saved, run.stages
    if saved is not None and "train_report" in saved:
        # A test stage alone: the training it scores, from run.json (a run.json from
        # before this was kept has only the settings).
        reports = [_report_from(saved["train_report"])] + reports
    summary = _summarise(run_dir, scenario, data_root, config, reports, wall,
                         {r.run_id for r in reports})
    if pr_curve and "test" in stages:
        from federation.pr_curve import FIGURE, write_pr_curve

        auprc = write_pr_curve(run_dir, data_root, scenario, config.seed, progress)
        if auprc is not None:
            summary["pr_curve"] = {"file": str(run_dir / FIGURE), "auprc": auprc}
            _write_atomic(run_dir / "summary.json",
                          json.dumps(summary, indent=1, sort_keys=True))
    return summary


RUN_FILE = "run.json"
LAYOUT_FILE = "layout.json"
TRAINING_MARKER = "training.incomplete"
# What a test stage may choose afresh; every other setting is the trained model's.
INFERENCE_CHOICES = ("inference_mode", "label_threshold", "timeout_s")


def _write_atomic(path: Path, text: str) -> None:
    """Write beside and rename over: readers see the old file or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _commit_training(run_dir: Path, data_root: Path, scenario: str, config: ProtocolConfig,
                     report: Any) -> None:
    """Training finished: run.json now describes the new model, and the marker goes."""
    _write_atomic(run_dir / RUN_FILE, json.dumps({
        "data_root": str(data_root), "scenario": scenario, "config": asdict(config),
        "stage_run_ids": {"train": report.run_id}, "train_report": asdict(report)},
        indent=1))
    (run_dir / TRAINING_MARKER).unlink(missing_ok=True)


def _report_from(saved: dict[str, Any]) -> Any:
    from server.coordinator import StageReport

    return StageReport(**saved)


def saved_run(run_dir: Path) -> dict[str, Any]:
    """What the training stage of RUN_DIR saved; one line if there is nothing to score."""
    marker = run_dir / TRAINING_MARKER
    if marker.exists():
        started = json.loads(marker.read_text())
        raise Pv4fadError(
            f"{run_dir}: a training stage for {started['scenario']} "
            f"({describe(started['config'])}) started but did not finish (interrupted or "
            "failed), so the party state mixes two trainings; train again "
            f"(pv4fad simulate --out {run_dir})")
    path = run_dir / RUN_FILE
    if not path.exists():
        raise Pv4fadError(f"{run_dir} holds no trained run (no {RUN_FILE}); "
                          "run the train stage first")
    return json.loads(path.read_text())


def describe(config: dict[str, Any]) -> str:
    """A configuration in the CLI's words, for messages."""
    return ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(config.items())
                     if k not in INFERENCE_CHOICES)


def check_same_training(run_dir: Path, saved: dict[str, Any], scenario: str | None,
                        given: dict[str, Any]) -> None:
    """A test stage scores with the model RUN_DIR holds: refuse a different scenario or
    training configuration, naming both (rather than scoring one with the other)."""
    if scenario is not None and scenario != saved["scenario"]:
        raise Pv4fadError(f"{run_dir} holds a model trained for {saved['scenario']}; "
                          f"--stage test cannot score {scenario} with it (train one for "
                          f"{scenario} in another --out)")
    differs = {k: v for k, v in given.items()
               if k not in INFERENCE_CHOICES and saved["config"].get(k) != v}
    if differs:
        raise Pv4fadError(
            f"{run_dir} holds a model trained with "
            f"{describe({k: saved['config'].get(k) for k in differs})}; this asks for "
            f"{describe(differs)}: drop those options for --stage test, or train again")


def _resolve_run(run_dir: Path, data_root: Path | None, scenario: str | None,
                 config: ProtocolConfig | None, saved: dict[str, Any] | None
                 ) -> tuple[Path, str, ProtocolConfig]:
    """Settings of a run: given ones, else those saved by its training stage."""
    from federation.data.generate import default_data_dir
    from federation.data.loader import list_scenarios

    if saved is not None:
        check_same_training(run_dir, saved, scenario, {})
        data_root = data_root or Path(saved["data_root"])
        scenario = saved["scenario"]
        config = config or ProtocolConfig(**saved["config"])
        check_same_training(run_dir, saved, None, asdict(config))
    data_root = Path(data_root) if data_root else default_data_dir()
    scenarios = list_scenarios(data_root)
    scenario = scenario or scenarios[0]
    if scenario not in scenarios:
        raise Pv4fadError(f"scenario {scenario!r} is not in {data_root / 'scenarios.txt'} "
                          f"(found: {', '.join(scenarios)})")
    return data_root, scenario, config or ProtocolConfig()


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
                                      5 * config.epsilon),
        # As many distinct questions per account as the defaults allow (30 = 3 x 10).
        lifetime_account_epsilon=max(PrivacyPolicy.lifetime_account_epsilon,
                                     3 * (config.inference_epsilon or 0.0)))
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
    from federation.audit import privacy_checks, traffic

    ledgers = sorted(run_dir.glob("parties/*/ledger.jsonl")) + [
        run_dir / "coordinator" / "ledger.jsonl"]
    # Party ledgers keep every run made in this directory; the run's own view is its
    # train and test stages (a retrain replaces the train stage).
    entries = merge_ledgers([p for p in ledgers if p.exists()], run_dir / "ledger.jsonl",
                            run_ids)
    predictions = run_dir / "parties" / PNS_ID / "test" / "predictions.csv"
    if predictions.exists():
        tmp = run_dir / ".predictions.csv.tmp"
        shutil.copyfile(predictions, tmp)
        tmp.replace(run_dir / "predictions.csv")
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
    _write_atomic(run_dir / "summary.json", json.dumps(summary, indent=1, sort_keys=True))
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
    """Largest peak RSS (MiB) each party reported, and the coordinator's. In a simulation
    parties may share a worker process; a party's figure is then its process's peak."""
    by_party: dict[str, float] = {}
    for report in reports:
        for party, values in report.public.items():
            for key, value in values.items():
                if key.endswith(".peak_rss_mib"):
                    by_party[party] = max(by_party.get(party, 0.0), float(value))
    by_party["coordinator"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return dict(sorted(by_party.items()))


def register(subparsers: argparse._SubParsersAction) -> None:
    from federation.cli import renamed_option

    d = ProtocolConfig
    p = subparsers.add_parser(
        "simulate", help="run the private federated protocol on one machine (train, then test)",
        description="Run the PNS, the bank clients and the coordinator of a scenario on this "
                    "machine. Training settings not given take the defaults shown; with "
                    "--stage test they are the trained model's (giving a different one is "
                    "refused).")
    # Protocol options default to "not given" (SUPPRESS) so that a test stage can tell a
    # setting the operator chose from a default; the defaults are ProtocolConfig's.
    off = argparse.SUPPRESS
    p.add_argument("--data", type=Path, help="challenge-layout data (default: embedded data)")
    p.add_argument("--scenario", help="scenario name from scenarios.txt (default: first)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN",
                   help="run directory (new, or one to retrain or score again)")
    p.add_argument("--stage", choices=("all", *STAGES), default="all",
                   help="all: train then test; test: score again from RUN's saved model "
                        "(default: all)")
    p.add_argument("--epsilon", type=_finite_float, default=off, metavar="E",
                   help=f"training privacy budget per bank account (default: {d.epsilon})")
    p.add_argument("--delta", type=_finite_float, default=off, metavar="D",
                   help=f"training delta (default: {d.delta:g})")
    p.add_argument("--inference-epsilon", type=_optional_float, default=off, metavar="E|none",
                   help="output privacy: randomized response per beneficiary identity and "
                        f"question (none: exact statuses; default: {d.inference_epsilon:g})")
    p.add_argument("--cell-depth", type=int, default=off, metavar="N",
                   help="depth of the PNS's tree of status-table cells (0: one cell; "
                        f"default: {d.cell_depth})")
    p.add_argument("--status-detail", choices=sorted(REPORTED_STATUSES), default=off,
                   help="what a bank reports per row: ok / not ok (coarse), or the five "
                        f"statuses (full; default: {d.status_detail})")
    p.add_argument("--max-rows-per-account", type=int, default=off, metavar="N",
                   help="training rows per beneficiary account that enter the counts "
                        f"(bounds one account's influence; default: {d.max_rows_per_account})")
    p.add_argument("--inference-mode", choices=INFERENCE_MODES, default=off,
                   help="scores: the PNS gets each row's randomized status and scores it; "
                        "labels: it gets only a flag per row (two-party CrypTen comparison; "
                        f"default: {d.inference_mode})")
    p.add_argument("--label-threshold", type=_finite_float, default=off, metavar="P",
                   help="label mode: flag a row when its anomaly probability exceeds this "
                        f"(default: {d.label_threshold})")
    p.add_argument("--plaintext", action="store_true", default=off,
                   help="switch the cryptography off (only to measure its cost; the privacy "
                        "checks then fail: exit 1)")
    p.add_argument("--phase-timeout", type=_finite_float, default=off, dest="timeout_s",
                   metavar="SECONDS", help="seconds a party may take per phase before it "
                   f"counts as failed (default: {d.timeout_s:g})")
    renamed_option(p, "--timeout", "--phase-timeout", type=_finite_float, default=off,
                   dest="timeout_s")
    p.add_argument("--seed", type=int, default=off,
                   help="seed of the model and data-sampling randomness; keys, masks and "
                        f"privacy noise always come from the OS (README.md; default: {d.seed})")
    p.add_argument("--fail", action="append", default=[], metavar="PARTY:PHASE[:MODE]",
                   type=_fault, help="inject a fault for resilience testing: PARTY crashes "
                   "in PHASE, or with MODE hang stops answering, with garbage answers with a "
                   f"corrupted payload (phases: {', '.join(PHASES)})")
    p.add_argument("--allow-degraded", action="store_true",
                   help="exit 0 when banks failed and the run went on without them "
                        "(default: exit 3, naming each failed party)")
    p.add_argument("--no-pr-curve", dest="pr_curve", action="store_false",
                   help="skip RUN/pr_curve.png (written when the test data has labels: the "
                        "private scores beside the PNS-only and centralized forests; fitting "
                        "the centralized forest takes about a minute on the default data)")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_cmd)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text!r}")
    return value


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else _finite_float(text)


def _fault(text: str) -> tuple[str, str]:
    party, _, where = text.partition(":")
    phase, _, mode = where.partition(":")
    if not party or phase not in PHASES or mode not in ("", "hang", "garbage"):
        raise argparse.ArgumentTypeError(
            f"expected PARTY:PHASE[:hang|:garbage] with PHASE one of {', '.join(PHASES)}, "
            f"found {text!r}")
    return party, where


def _cmd(args: argparse.Namespace) -> int:
    from federation.cli import emit

    stages = STAGES if args.stage == "all" else (args.stage,)
    given = {f.name: getattr(args, f.name) for f in fields(ProtocolConfig)
             if hasattr(args, f.name)}
    if "train" in stages:
        config = ProtocolConfig(**given)
    else:
        saved = saved_run(args.out)
        check_same_training(args.out, saved, args.scenario, given)
        # Scoring again: how the PNS receives the banks' statuses is an inference choice.
        config = replace(ProtocolConfig(**saved["config"]),
                         **{k: v for k, v in given.items() if k in INFERENCE_CHOICES})
    summary = simulate(args.out, data_root=args.data, scenario=args.scenario, config=config,
                       stages=stages, faults=dict(args.fail), verbose=args.verbose,
                       pr_curve=args.pr_curve)
    emit(summary, args.json, _human(summary, args.out))
    return outcome(summary, args.out, allow_degraded=args.allow_degraded)


def outcome(summary: dict[str, Any], run_dir: Path, *, allow_degraded: bool) -> int:
    """The exit code of a finished run, and its last line on stderr when not 0: a failed
    privacy check first, then parties that failed (each with its own cause)."""
    from federation.cli import fail
    from federation.errors import EXIT_OK, EXIT_PARTY_FAILED, EXIT_PRIVACY_CHECK

    failed_checks = sorted(k for k, v in summary["privacy_checks"].items() if v)
    if failed_checks:
        why = ("the run used --plaintext" if summary["config"].get("plaintext")
               else f"see `pv4fad audit --out {run_dir}`")
        fail(f"privacy check failed: {', '.join(failed_checks)} ({why})")
        return EXIT_PRIVACY_CHECK
    failed = [f"{party} in {stage} {reason}" for stage, info in summary["stages"].items()
              for party, reason in sorted(info["failed_parties"].items())]
    if failed and not allow_degraded:
        fail(f"degraded run: {len(failed)} part{'y' if len(failed) == 1 else 'ies'} failed: "
             f"{'; '.join(failed)} (--allow-degraded accepts a degraded run)")
        return EXIT_PARTY_FAILED
    return EXIT_OK


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
    outputs = "predictions.csv, summary.json, ledger.jsonl"
    if summary.get("pr_curve"):
        outputs += ", pr_curve.png"
    lines.append(f"outputs in {run_dir}: {outputs}")
    return "\n".join(lines)
