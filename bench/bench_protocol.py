"""Benchmark of the PV4FAD protocol: accuracy, privacy trade-off, cost of privacy, scale.

Parts (choose with --parts):
  runs     full simulated runs (Flower, CKKS, secure aggregation) per scenario, private and
           plaintext, --reps times: AUPRC, wall time, bytes per party, peak memory.
  sweep    AUPRC against epsilon, for training noise and for inference randomized
           response. The crypto computes the joint counts exactly (tested against the
           plaintext pipeline), so the sweep takes the exact counts once and draws the DP
           noise offline, --draws times per epsilon, exactly as the banks would.
  designs  the same offline AUPRC (training epsilon 1, inference --inference-epsilon) for
           the model's design choices: cells (tree depth 0, 1 or 2) x status (full or coarse).
  ceiling  the centralized forest given the status as the banks report it (coarse by
           default), scored on test statuses after the same randomized response: what
           any model could reach under the same output privacy.
  scale    one private run at challenge scale with 9 bank clients.
Writes the raw figures to docs/benchmarks/protocol.json and the tables to
docs/benchmarks/protocol.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from federation.config import ProtocolConfig
from federation.status_model import N_CLASSES, StatusTable, combined_scores

TRAIN_EPSILONS = (0.1, 0.3, 1.0, 3.0, 10.0)
INFERENCE_EPSILONS = (0.1, 1.0, 3.0, 5.0, 8.0, 10.0, 12.0, 15.0)


def data_dir(scale: str, root: Path) -> Path:
    from federation.data.generate import default_data_dir, generate, generator_digest

    if scale == "default":
        return default_data_dir()
    path = root / f"{scale}-seed0-{generator_digest()}"  # a changed generator: new data
    if not (path / "scenarios.txt").exists():
        generate(path, scale, 0)
    return path


def full_run(data: Path, scenario: str, out: Path, config: ProtocolConfig) -> dict[str, Any]:
    from federation.simulate import simulate

    summary = simulate(out, data_root=data, scenario=scenario, config=config)
    traffic = summary["traffic_bytes"]
    return {
        "auprc": summary["auprc"], "auprc_pns_only": summary["auprc_pns_only"],
        "output_epsilon": config.inference_epsilon,
        "wall_s": summary["wall_seconds"],
        "bytes_total": sum(v["sent"] for v in traffic.values()),
        "bytes": traffic, "peak_rss_mib": max(summary["peak_rss_mib"].values()),
        "phase_s": {s: v["phase_seconds"] for s, v in summary["stages"].items()},
        "failed": {s: v["failed_parties"] for s, v in summary["stages"].items()},
        "privacy_checks": summary["privacy_checks"],
        "epsilon": summary["training_epsilon"],
        "inference_epsilon_per_account": summary["inference_epsilon_per_account"],
        "test_rows": summary["stages"].get("test", {}).get("results", {}).get("rows"),
    }


def exact_inputs(data: Path, config: ProtocolConfig) -> dict[str, np.ndarray]:
    """What the protocol computes before noise: cells, classes, full statuses (the bank
    reports them coarser per config.status_detail, see _auprc), capped rows."""
    from clients.pns import model_scores, train_model
    from federation.data.loader import load_centralized
    from federation.features import final_receiver, status_in_the_clear

    train, accounts = load_centralized(data, "train")
    test, test_accounts = load_centralized(data, "test")
    labels = train["Label"].to_numpy().astype(np.int64)
    trained = train_model(train, final_receiver(train).to_numpy(), labels, config)
    test_score, test_cells = model_scores(trained.model, test)
    capped = trained.counted
    return {
        "cell": trained.cells[capped], "klass": trained.classes[capped],
        "status": status_in_the_clear(train, accounts).astype(np.int64)[capped],
        "capped": np.arange(len(capped)),
        "test_cell": test_cells, "test_score": test_score,
        "test_status": status_in_the_clear(test, test_accounts).astype(np.int64),
        "test_label": test["Label"].to_numpy(),
        "test_identity": _identities(test),
    }


def _auprc(x: dict[str, np.ndarray], config: ProtocolConfig, train_eps: float | None,
           inference_eps: float | None) -> float:
    from crypto.dp import categorical_randomized_response, gaussian_noise
    from federation.features import reported_status
    from server.privacy import training_noise

    k = config.n_statuses
    rows = x["capped"]
    exact = np.zeros((config.n_cells, N_CLASSES, k))
    train_status = reported_status(x["status"], config.status_detail)
    np.add.at(exact, (x["cell"][rows], x["klass"][rows], train_status[rows]), 1.0)
    noisy = exact[:, :, 1:].copy()
    if train_eps is not None:
        sigma, _ = training_noise(dataclasses.replace(config, epsilon=train_eps))
        noisy += gaussian_noise(noisy.shape, sigma)
    table = StatusTable.from_noisy_counts(noisy, x["cell"], x["klass"], rows)
    status = reported_status(x["test_status"], config.status_detail)
    if inference_eps is not None:  # one draw per distinct identity, as the bank does
        _, first, codes = np.unique(x["test_identity"], return_index=True, return_inverse=True)
        status = categorical_randomized_response(status[first], k, inference_eps)[codes]
    evidence = table.status_evidence(x["test_score"], x["test_cell"], inference_eps)
    scores = combined_scores(table.forest_log_odds(x["test_score"], x["test_cell"]),
                             evidence[np.arange(len(status)), status])
    return float(average_precision_score(x["test_label"], scores))


def sweep(x: dict[str, np.ndarray], config: ProtocolConfig, draws: int) -> dict[str, Any]:
    def median_of(train_eps: float | None, inference_eps: float | None) -> list[float]:
        values = [_auprc(x, config, train_eps, inference_eps) for _ in range(draws)]
        return [statistics.median(values), min(values), max(values)]

    return {
        "no_noise": median_of(None, None),
        "training": {eps: median_of(eps, None) for eps in TRAIN_EPSILONS},
        "inference": {eps: median_of(1.0, eps) for eps in INFERENCE_EPSILONS},
        "pns_only": float(average_precision_score(x["test_label"],
                                                  x["test_score"].sum(axis=1))),
    }


def ceiling(data: Path, config: ProtocolConfig, draws: int) -> dict[str, Any]:
    from crypto.dp import categorical_randomized_response
    from federation.baselines import anomaly_forest
    from federation.data.loader import load_centralized
    from federation.features import PNSFeaturizer, reported_status, status_in_the_clear

    train, accounts = load_centralized(data, "train")
    test, test_accounts = load_centralized(data, "test")
    k = config.n_statuses
    featurizer = PNSFeaturizer()
    features, test_features = featurizer.fit_transform(train), featurizer.transform(test)
    status = reported_status(status_in_the_clear(train, accounts), config.status_detail)
    forest = anomaly_forest(seed=config.seed, n_rows=len(train)).fit(
        np.hstack([features, np.eye(k)[status]]), train["Label"].to_numpy())
    test_status = reported_status(status_in_the_clear(test, test_accounts),
                                  config.status_detail)
    _, first, codes = np.unique(_identities(test), return_index=True, return_inverse=True)

    def auprc(eps: float | None) -> float:
        reported = test_status if eps is None else categorical_randomized_response(
            test_status[first], k, eps)[codes]
        score = forest.predict_proba(np.hstack([test_features, np.eye(k)[reported]]))[:, 1]
        return float(average_precision_score(test["Label"].to_numpy(), score))

    out: dict[str, Any] = {"no_noise": auprc(None), "inference": {}}
    for eps in (e for e in INFERENCE_EPSILONS if e >= 5.0):
        values = [auprc(eps) for _ in range(draws)]
        out["inference"][eps] = [statistics.median(values), min(values), max(values)]
    return out


def _identities(tx: Any) -> np.ndarray:
    """A beneficiary identity per row, the unit of one randomized-response draw."""
    return tx[["BeneficiaryAccount", "BeneficiaryName", "BeneficiaryStreet",
               "BeneficiaryCountryCityZip"]].astype(str).agg("|".join, axis=1).to_numpy()


def designs(data: Path, config: ProtocolConfig, draws: int) -> dict[str, list[float]]:
    """AUPRC of each (cell depth, status detail) at the benchmark's privacy settings."""
    out = {}
    for depth in (0, 1, 2):
        x = exact_inputs(data, dataclasses.replace(config, cell_depth=depth))
        for detail in ("full", "coarse"):
            cfg = dataclasses.replace(config, cell_depth=depth, status_detail=detail)
            values = [_auprc(x, cfg, cfg.epsilon, cfg.inference_epsilon) for _ in range(draws)]
            out[f"depth {depth}, {detail}"] = [statistics.median(values), min(values),
                                               max(values)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="runs,sweep",
                        help="runs, sweep, designs, ceiling, scale, baseline, or render "
                        "(tables from the saved JSON)")
    parser.add_argument("--scenarios", default="scenario01,scenario02,scenario03")
    parser.add_argument("--modes", default="private,plaintext")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--inference-epsilon", type=float, default=ProtocolConfig.inference_epsilon)
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/protocol.json"))
    args = parser.parse_args()
    parts = args.parts.split(",")
    measuring = parts != ["render"]
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {_cpus()} CPUs",
                               "date": time.strftime("%Y-%m-%d"), "args": vars(args) | {
                                   "work": str(args.work), "out": str(args.out)}}
    if args.out.exists():
        # Rendering alone keeps the arguments of the runs that measured the figures.
        stored = json.loads(args.out.read_text())
        results = stored | {"args": results["args"] if measuring else stored["args"]}
    config = ProtocolConfig(epsilon=1.0, inference_epsilon=args.inference_epsilon)
    if "runs" in parts:
        data = data_dir("default", args.work)
        runs: dict[str, Any] = dict(results.get("runs", {}))
        configs = {"private": config,
                   "plaintext": ProtocolConfig(**{**config.__dict__, "plaintext": True})}
        for scenario in args.scenarios.split(","):
            for mode in args.modes.split(","):
                cfg = configs[mode]
                reps = [full_run(data, scenario, args.work / f"{scenario}-{mode}-{r}", cfg)
                        for r in range(args.reps)]
                runs[_run_key(scenario, mode, cfg)] = reps
                _save(args.out, results | {"runs": runs})
        results["runs"] = runs
    if "baseline" in parts:
        from federation.baselines import run_baselines

        results["baseline"] = run_baselines(data_dir("default", args.work), "scenario01")
    if "sweep" in parts:
        x = exact_inputs(data_dir("default", args.work), config)
        results["sweep"] = sweep(x, config, args.draws)
    if "designs" in parts:
        results["designs"] = {"output_epsilon": config.inference_epsilon,
                              "auprc": designs(data_dir("default", args.work), config,
                                               args.draws)}
    if "ceiling" in parts:
        results["ceiling"] = ceiling(data_dir("default", args.work), config, args.draws)
    if "scale" in parts:
        data = data_dir("challenge", args.work)
        results["scale"] = full_run(data, "scenario03", args.work / "challenge", config)
    if measuring:
        _save(args.out, results)
    text = render(results)
    args.out.with_suffix(".md").write_text(text)
    print(text)


def _run_key(scenario: str, mode: str, config: ProtocolConfig) -> str:
    """scenario/mode, with the output epsilon where it is not the default (so a private run
    and its plaintext twin share the suffix)."""
    if config.inference_epsilon != ProtocolConfig.inference_epsilon:
        mode = f"{mode}, output epsilon {config.inference_epsilon:g}"
    return f"{scenario}/{mode}"


def _med(values: list[float]) -> float:
    return statistics.median(values)


def render(results: dict[str, Any]) -> str:
    """Markdown tables of the benchmark's figures."""
    a = results["args"]
    lines = ["## PV4FAD protocol", "",
             f"Machine: {results['machine']}; {results['date']}. Command: "
             "`.venv/bin/python bench/bench_protocol.py --parts "
             "runs,sweep,designs,ceiling,baseline --scenarios scenario01 --reps 5`, then "
             "`--parts runs --scenarios scenario02,scenario03 --modes private --reps 5`; the "
             "output-epsilon-8 rows: `--parts runs --scenarios scenario01 --modes private "
             "--reps 3 --inference-epsilon 8`, then `--scenarios scenario02,scenario03 --reps 1` "
             "with the same epsilon; then `--parts scale`.", ""]
    runs = results.get("runs", {})
    base = results.get("baseline")
    # The accuracy target: the centralized plaintext forest's AUPRC minus 0.01.
    target = base["models"]["centralized_rf"]["auprc"] - 0.01 if base else None
    if runs:
        lines += ["Full simulated runs on the default data (Flower simulation, CKKS, secure "
                  "aggregation), training epsilon 1 (delta 1e-6), inference randomized "
                  f"response at epsilon {ProtocolConfig.inference_epsilon:g} unless the mode "
                  "says otherwise; medians over n runs [min, max]"
                  + (f"; target: centralized forest minus 0.01 = {target:.4f}" if target else "")
                  + ":", "",
                  "| scenario | mode | n | AUPRC | target met | PNS-only | wall s | "
                  "bytes sent (all) | peak RSS MiB | privacy checks |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for key, reps in runs.items():
            scenario, mode = key.split("/")
            failed = sum(v for r in reps for v in r["privacy_checks"].values())
            auprc = [r["auprc"] for r in reps]
            met = ("" if target is None or mode.startswith("plaintext")
                   else "yes" if _med(auprc) >= target else "**no**")
            lines.append(
                f"| {scenario} | {mode} | {len(reps)} | {_med(auprc):.4f} "
                f"[{min(auprc):.4f}, {max(auprc):.4f}] | {met} | "
                f"{_med([r['auprc_pns_only'] for r in reps]):.4f} | "
                f"{_med([r['wall_s'] for r in reps]):.1f} | "
                f"{_med([r['bytes_total'] for r in reps]):,.0f} | "
                f"{_med([r['peak_rss_mib'] for r in reps]):.0f} | "
                f"{'pass' if not failed else f'{failed} flagged'} |")
        for eps in sorted({r["output_epsilon"] for reps in runs.values() for r in reps
                           if r["output_epsilon"] is not None}):
            per_account = max(r["inference_epsilon_per_account"] for reps in runs.values()
                              for r in reps if r["output_epsilon"] == eps)
            lines += ["", f"Inference privacy loss at output epsilon {eps:g}: epsilon {eps:g} "
                      "per beneficiary identity (one randomized-response draw per distinct "
                      "identity); the most-queried account, queried with several detail "
                      f"variants, composes to epsilon {per_account:.2f} (bank accountants, "
                      "largest over the runs)."]
        lines += ["", "Cost of privacy (private / plaintext, medians, same benchmark run):", "",
                  "| scenario | wall time ratio | bytes ratio |", "|---|---|---|"]
        for key in runs:
            twin = key.replace("/private", "/plaintext", 1)
            if twin != key and twin in runs:
                p, q = runs[key], runs[twin]
                wall = _med([r["wall_s"] for r in p]) / _med([r["wall_s"] for r in q])
                nbytes = _med([r["bytes_total"] for r in p]) / _med([r["bytes_total"] for r in q])
                lines.append(f"| {key.replace('/private', '')} | {wall:.2f} | {nbytes:.2f} |")
        lines += ["", "Bytes per test transaction and party (private runs, first repetition; "
                  "both stages):", "", "| scenario | party | sent | received |",
                  "|---|---|---|---|"]
        for key, reps in runs.items():
            if key.endswith("/private"):
                for party, t in sorted(reps[0]["bytes"].items()):
                    n = reps[0].get("test_rows") or 1
                    lines.append(f"| {key.split('/')[0]} | {party} | {t['sent'] / n:,.0f} | "
                                 f"{t['received'] / n:,.0f} |")
    if base:
        m = base["models"]
        lines += ["", f"Plaintext baselines on the same data (`pv4fad baseline`, scenario01): "
                  f"centralized forest {m['centralized_rf']['auprc']:.4f}, PNS-only forest "
                  f"{m['pns_only_rf']['auprc']:.4f}, gradient boosting "
                  f"{m['centralized_hgb']['auprc']:.4f}."]
    sweep_ = results.get("sweep")
    if sweep_:
        lines += ["", f"AUPRC against epsilon (default data, scenario-independent: the joint "
                  f"counts are exact under encryption, so the noise is drawn offline "
                  f"{a['draws']} times per epsilon; median [min, max]). No noise: "
                  f"{sweep_['no_noise'][0]:.4f}; PNS-only forest: {sweep_['pns_only']:.4f}.", "",
                  "| epsilon | training noise (no output privacy) "
                  "| inference RR (training eps 1) | centralized forest, same RR |",
                  "|---|---|---|---|"]
        top = results.get("ceiling", {"inference": {}})
        columns = (sweep_["training"], sweep_["inference"], top["inference"])
        keys = sorted({float(k) for part in columns for k in part})
        for eps in keys:
            cells = []
            for part in columns:
                v = {float(k): x for k, x in part.items()}.get(eps)
                cells.append(f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]" if v else "")
            lines.append(f"| {eps:g} | {' | '.join(cells)} |")
        if "no_noise" in top:
            lines += ["", "Centralized forest given the status as the banks report it "
                      f"(ok / not ok), exact at inference: {top['no_noise']:.4f}; its column "
                      "above applies the same randomized response to the test statuses (one "
                      "draw per identity): what any model could reach under the same output "
                      "privacy."]
    design = results.get("designs")
    if design:
        lines += ["", f"Design choices (offline as the sweep; training epsilon 1, inference "
                  f"epsilon {design['output_epsilon']:g}, median [min, max] of "
                  f"{a['draws']} draws):",
                  "", "| cells, reported status | AUPRC |", "|---|---|"]
        for name, v in design["auprc"].items():
            lines.append(f"| {name} | {v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}] |")
    scale = results.get("scale")
    if scale:
        lines += ["", "Challenge scale (3 M training, 1 M test transactions, 9 bank clients), "
                  "one run:", "", f"- AUPRC {scale['auprc']:.4f} (PNS-only "
                  f"{scale['auprc_pns_only']:.4f}); wall {scale['wall_s']:.0f} s; largest "
                  f"process peak RSS {scale['peak_rss_mib']:.0f} MiB; bytes sent "
                  f"{scale['bytes_total']:,.0f}",
                  f"- phases (s): {json.dumps(scale['phase_s'])}",
                  f"- failed parties: {json.dumps(scale['failed'])}"]
    return "\n".join(lines) + "\n"


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
