"""Benchmark of the PV4FAD protocol (version 2): accuracy, privacy trade-off, costs, scale.

Parts (choose with --parts):
  runs      full simulated runs (Flower, CKKS, secure aggregation) per scenario, private
            --reps times and plaintext --plain-reps times: AUPRC, wall time, bytes per party,
            peak memory, privacy checks, per-account privacy loss.
  curve     AUPRC against the banks' status epsilon (randomized response, one answer per
            question, used at training and at inference) at training epsilon 1: the
            protocol's model beside a centralized forest given the same answers (trained
            and tested on them). The crypto computes the joint counts exactly (tested
            against the plaintext pipeline), so the curve takes the exact inputs once and
            draws the answers and the DP noise offline, as the banks would.
  training  AUPRC against the training epsilon at the default status epsilon.
  labels    label-only inference on the trained scenario01 run of `runs`: test-stage
            wall time and bytes against score mode, precision and recall at the threshold,
            and the share of rows whose flag depends on the bank's answer.
  scale     one private and one plaintext run at challenge scale with 9 bank clients.
  baseline  the plaintext baselines (`pv4fad baseline`) on the default data.
  gap       where the curve's gap to the centralized forest comes from: the protocol
            without training noise, and a two-class forest on the PNS's features alone
            beside the protocol's own forest.
Writes the raw figures to docs/benchmarks/protocol.json and the tables to
docs/benchmarks/protocol.md (`--parts render` redraws the tables from the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from federation.config import ProtocolConfig
from federation.status_model import N_CLASSES, StatusTable, combined_scores

CURVE_EPSILONS = (1.0, 2.0, 3.0, 5.0, 8.0, 10.0)
TRAIN_EPSILONS = (0.1, 0.3, 1.0, 3.0, 10.0)


def data_dir(scale: str, root: Path) -> Path:
    from federation.data.generate import default_data_dir, generate, generator_digest

    if scale == "default":
        return default_data_dir()
    path = root / f"{scale}-seed0-{generator_digest()}"  # a changed generator: new data
    if not (path / "scenarios.txt").exists():
        generate(path, scale, 0)
    return path


def _stage_bytes(summary: dict[str, Any]) -> int:
    return sum(v["sent"] + v.get("exchanged", 0) for v in summary["traffic_bytes"].values())


def full_run(data: Path, scenario: str, out: Path, config: ProtocolConfig,
             stages: tuple[str, ...] = ("train", "test")) -> dict[str, Any]:
    from federation.simulate import simulate

    summary = simulate(out, data_root=data, scenario=scenario, config=config, stages=stages)
    test = summary["stages"].get("test", {}).get("results", {})
    return {
        "auprc": summary["auprc"], "auprc_pns_only": summary["auprc_pns_only"],
        "precision": summary.get("precision"), "recall": summary.get("recall"),
        "wall_s": summary["wall_seconds"], "bytes_total": _stage_bytes(summary),
        "bytes": summary["traffic_bytes"], "peak_rss_mib": max(summary["peak_rss_mib"].values()),
        "phase_s": {s: v["phase_seconds"] for s, v in summary["stages"].items()},
        "failed": {s: v["failed_parties"] for s, v in summary["stages"].items()},
        "privacy_checks": summary["privacy_checks"], "privacy": summary["privacy"],
        "epsilon": summary["training_epsilon"], "test_rows": test.get("rows"),
    }


# -- offline: exact inputs, then the banks' answers and noise drawn as the banks would ------
def exact_inputs(data: Path, config: ProtocolConfig) -> dict[str, Any]:
    """What the protocol computes before noise: the PNS's model, cells, classes, counted
    rows; every row's true status and question (identity)."""
    from clients.pns import model_scores, train_model
    from federation.data.loader import load_centralized
    from federation.features import PNSFeaturizer, final_receiver, status_in_the_clear

    train, accounts = load_centralized(data, "train")
    test, test_accounts = load_centralized(data, "test")
    labels = train["Label"].to_numpy().astype(np.int64)
    trained = train_model(train, final_receiver(train).to_numpy(), labels, config)
    test_score, test_cells = model_scores(trained.model, test)
    featurizer = PNSFeaturizer()
    return {
        "cell": trained.cells, "klass": trained.classes, "counted": trained.counted,
        "status": status_in_the_clear(train, accounts).astype(np.int64),
        "question": _questions(train), "label": labels,
        "features": featurizer.fit_transform(train),
        "test_features": featurizer.transform(test),
        "test_cell": test_cells, "test_score": test_score,
        "test_status": status_in_the_clear(test, test_accounts).astype(np.int64),
        "test_question": _questions(test), "test_label": test["Label"].to_numpy(),
    }


def _questions(tx: Any) -> list[bytes]:
    """The question each row asks a bank: its beneficiary identity (16-byte digest)."""
    joined = tx[["BeneficiaryAccount", "BeneficiaryName", "BeneficiaryStreet",
                 "BeneficiaryCountryCityZip"]].astype(str).agg("|".join, axis=1)
    return [hashlib.blake2b(q.encode(), digest_size=16).digest() for q in joined]


def answers(questions: list[bytes], status: np.ndarray, k: int, epsilon: float | None,
            key: bytes) -> np.ndarray:
    """The banks' answers: keyed randomized response per (question, true status), so a
    question asked at training and at inference gets the same answer."""
    from crypto.dp import keyed_randomized_response

    if epsilon is None:
        return status
    draw_keys = [q + bytes([int(s)]) for q, s in zip(questions, status, strict=True)]
    return keyed_randomized_response(status, draw_keys, k, epsilon, key)


def protocol_auprc(x: dict[str, Any], config: ProtocolConfig, train_eps: float | None,
                   status_eps: float | None, key: bytes) -> float:
    from crypto.dp import skellam_noise
    from federation.config import training_noise
    from federation.features import reported_status

    k, rows = config.n_statuses, x["counted"]
    train = answers([x["question"][i] for i in rows],
                    reported_status(x["status"][rows], config.status_detail), k, status_eps, key)
    exact = np.zeros((config.n_cells, N_CLASSES, k))
    np.add.at(exact, (x["cell"][rows], x["klass"][rows], train), 1.0)
    noisy, variance = exact[:, :, 1:].copy(), 0.0
    if train_eps is not None:
        variance = training_noise(dataclasses.replace(config, epsilon=train_eps)).variance
        noisy += skellam_noise(noisy.shape, variance)
    table = StatusTable.from_noisy_counts(noisy, x["cell"][rows], x["klass"][rows],
                                          np.arange(len(rows)), variance)
    test = answers(x["test_question"], reported_status(x["test_status"], config.status_detail),
                   k, status_eps, key)
    evidence = table.status_evidence(x["test_score"], x["test_cell"])
    scores = combined_scores(table.forest_log_odds(x["test_score"], x["test_cell"]),
                             evidence[np.arange(len(test)), test])
    return float(average_precision_score(x["test_label"], scores))


def centralized_auprc(x: dict[str, Any], config: ProtocolConfig, status_eps: float | None,
                      key: bytes) -> float:
    """A centralized forest on the PNS's features and the banks' answers (the same
    answers at training and at inference): what any model reaches with that status."""
    from federation.baselines import anomaly_forest
    from federation.features import reported_status

    k = config.n_statuses
    train = answers(x["question"], reported_status(x["status"], config.status_detail), k,
                    status_eps, key)
    test = answers(x["test_question"], reported_status(x["test_status"], config.status_detail),
                   k, status_eps, key)
    forest = anomaly_forest(seed=config.seed, n_rows=len(train)).fit(
        np.hstack([x["features"], np.eye(k)[train]]), x["label"])
    score = forest.predict_proba(np.hstack([x["test_features"], np.eye(k)[test]]))[:, 1]
    return float(average_precision_score(x["test_label"], score))


def _spread(values: list[float]) -> list[float]:
    return [statistics.median(values), min(values), max(values)]


def curve(x: dict[str, Any], config: ProtocolConfig, draws: int, forest_draws: int
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": {}, "centralized": {}}
    for eps in (None, *CURVE_EPSILONS):
        keys = [os.urandom(32) for _ in range(draws)]
        name = "exact" if eps is None else f"{eps:g}"
        out["protocol"][name] = _spread([protocol_auprc(x, config, 1.0, eps, key)
                                         for key in keys])
        out["centralized"][name] = _spread([centralized_auprc(x, config, eps, key)
                                            for key in keys[:forest_draws]])
        print(f"curve {name}: protocol {out['protocol'][name]}, centralized "
              f"{out['centralized'][name]}", flush=True)
    out["pns_only"] = float(average_precision_score(x["test_label"],
                                                    x["test_score"].sum(axis=1)))
    return out


def gap(x: dict[str, Any], config: ProtocolConfig, draws: int) -> dict[str, Any]:
    """The curve's gap split in its parts: the training noise (the protocol at training
    epsilon 1 against no training noise, same answers) and the PNS's forest (its
    calibrated three-class scores against a two-class forest on the same features, both
    without any status)."""
    from federation.baselines import anomaly_forest

    out: dict[str, Any] = {"status_epsilon": {}}
    for eps in (1.0, 3.0, 10.0):
        keys = [os.urandom(32) for _ in range(draws)]
        out["status_epsilon"][f"{eps:g}"] = {
            "training_epsilon_1": _spread([protocol_auprc(x, config, 1.0, eps, k)
                                           for k in keys]),
            "no_training_noise": _spread([protocol_auprc(x, config, None, eps, k)
                                          for k in keys])}
        print(f"gap {eps:g}: {out['status_epsilon'][f'{eps:g}']}", flush=True)
    forest = anomaly_forest(seed=config.seed, n_rows=len(x["label"])).fit(x["features"],
                                                                           x["label"])
    out["pns_forest"] = float(average_precision_score(x["test_label"],
                                                      x["test_score"].sum(axis=1)))
    out["two_class_forest"] = float(average_precision_score(
        x["test_label"], forest.predict_proba(x["test_features"])[:, 1]))
    return out


def training_sweep(x: dict[str, Any], config: ProtocolConfig, draws: int) -> dict[str, Any]:
    keys = [os.urandom(32) for _ in range(draws)]
    return {f"{eps:g}": _spread([protocol_auprc(x, config, eps, config.inference_epsilon, k)
                                 for k in keys]) for eps in TRAIN_EPSILONS}


# -- label mode -------------------------------------------------------------------------------
def label_mode(run_dir: Path, config: ProtocolConfig, reps: int) -> dict[str, Any]:
    """Test stage only, on a trained run: score mode and label mode alternately."""
    from federation.simulate import simulate

    out: dict[str, Any] = {"scores": [], "labels": []}
    for _ in range(reps):
        for mode in ("scores", "labels"):
            cfg = dataclasses.replace(config, inference_mode=mode)
            summary = simulate(run_dir, stages=("test",), config=cfg)
            out[mode].append({
                "wall_s": summary["wall_seconds"], "bytes_total": _stage_bytes(summary),
                "phase_s": summary["stages"]["test"]["phase_seconds"],
                "precision": summary.get("precision"), "recall": summary.get("recall"),
                "exchanged": {p: v.get("exchanged", 0)
                              for p, v in summary["traffic_bytes"].items()}})
            if mode == "scores":
                out["scores"][-1].update(_threshold_metrics(run_dir, config.label_threshold))
    out["leak"] = _label_leak(run_dir, config.label_threshold)
    return out


def _threshold_metrics(run_dir: Path, threshold: float) -> dict[str, float]:
    import pandas as pd

    scores = pd.read_csv(run_dir / "predictions.csv")
    arrays = np.load(run_dir / "parties" / "swift" / "test" / "scores.npz")
    flags, labels = scores["Score"].to_numpy() > threshold, arrays["label"]
    hits = int((flags & (labels == 1)).sum())
    return {"precision": hits / max(int(flags.sum()), 1),
            "recall": hits / int((labels == 1).sum())}


def _label_leak(run_dir: Path, threshold: float) -> dict[str, float]:
    """Share of the bank-answered test rows whose flag differs between the statuses: only
    there does a flag reveal the bank's answer (the PNS can tell which rows those are)."""
    from scipy.special import logit

    pns = run_dir / "parties" / "swift"
    table = StatusTable.from_json(json.loads((pns / "status_table.json").read_text()))
    arrays = np.load(pns / "test" / "scores.npz")
    rows = np.concatenate([np.load(p)["rows"] for p in sorted(
        (pns / "test").glob("linkage_*.npz"))])
    scores, cells = arrays["score"][rows], arrays["cell"][rows]
    base = table.forest_log_odds(scores, cells)[:, None] + table.status_evidence(scores, cells)
    flags = base > logit(threshold)
    revealing = flags.any(axis=1) & ~flags.all(axis=1)
    return {"rows": int(len(rows)), "revealing_share": float(revealing.mean())}


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="runs,curve",
                        help="runs, curve, training, gap, labels, scale, baseline, or render")
    parser.add_argument("--scenarios", default="scenario01,scenario02,scenario03")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--plain-reps", type=int, default=3)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--forest-draws", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/protocol.json"))
    parser.add_argument("--timeout", type=float, default=ProtocolConfig.timeout_s,
                        help="seconds a party may take per phase (raise it on a busy machine)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already saved in --out and add only the missing ones")
    args = parser.parse_args()
    parts = args.parts.split(",")
    results: dict[str, Any] = {}
    if args.out.exists():
        results = json.loads(args.out.read_text())
    if parts != ["render"]:
        results.update(machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                       date=time.strftime("%Y-%m-%d"))
        results.setdefault("commands", {}).update({p: vars(args) | {
            "work": str(args.work), "out": str(args.out)} for p in parts})
    config = ProtocolConfig(timeout_s=args.timeout)
    data = data_dir("default", args.work)
    if "runs" in parts:
        runs: dict[str, Any] = dict(results.get("runs", {}))
        plain = dataclasses.replace(config, plaintext=True)
        for scenario in args.scenarios.split(","):
            for mode, cfg, reps in (("private", config, args.reps),
                                    ("plaintext", plain, args.plain_reps)):
                key = f"{scenario}/{mode}"
                kept = list(runs.get(key, []))[:reps] if args.resume else []
                if kept:
                    print(f"{key}: {len(kept)} of {reps} runs already in {args.out}, kept")
                for r in range(len(kept), reps):  # saved after each run: nothing lost
                    kept.append(full_run(data, scenario, args.work / f"{scenario}-{mode}-{r}",
                                         cfg))
                    runs[key] = kept
                    _save(args.out, results | {"runs": runs})
                runs[key] = kept
        results["runs"] = runs
    if "baseline" in parts:
        from federation.baselines import run_baselines

        results["baseline"] = run_baselines(data, "scenario01")
    if "curve" in parts or "training" in parts or "gap" in parts:
        x = exact_inputs(data, config)
        if "gap" in parts:
            results["gap"] = gap(x, config, args.draws)
        if "curve" in parts:
            results["curve"] = curve(x, config, args.draws, args.forest_draws)
        if "training" in parts:
            results["training"] = training_sweep(x, config, args.draws)
        _save(args.out, results)
    if "labels" in parts:
        trained = args.work / "scenario01-private-0"
        if not (trained / "summary.json").exists():  # `runs` was resumed: train one here
            full_run(data, "scenario01", trained, config)
        results["labels"] = label_mode(trained, config, args.reps)
    if "scale" in parts:
        challenge = data_dir("challenge", args.work)
        results["scale"] = {mode: full_run(challenge, "scenario03", args.work / f"challenge-{mode}",
                                           dataclasses.replace(config, plaintext=mode == "plain"))
                            for mode in ("private", "plain")}
    if parts != ["render"]:
        _save(args.out, results)
    from bench_protocol_render import render

    text = render(results)
    args.out.with_suffix(".md").write_text(text)
    print(text)


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
