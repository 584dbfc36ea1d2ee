"""SISA and FairSISA benchmark: retraining cost of `forget` against full retraining for
S = 5, 10, 20 shards, and the FairSISA comparison on German credit (and on a larger
generated set, where group rates are measured precisely) over many seeds.

    .venv/bin/python bench/bench_sisa.py [--requests 15] [--seeds 20] [--out runs/bench_sisa.json]

Prints markdown tables of medians (in-process hosts; the Flower transport moves the same
requests and does not change the samples processed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from federation.sisa.partition import deal_partitions
from server.sisa import LocalTransport, SisaConfig, SisaCoordinator
from server.sisa_fairness import (
    METHODS,
    FairnessSetup,
    render_table,
    run_fairness,
    run_seed,
    run_unlearning,
    summarise,
)


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def cost_rows(
    shards: int, slices: int, batch: int, requests: int, seed: int,
    dataset: str = "german", learner: str = "sgd", epochs: int = 5,
) -> dict[str, Any]:
    """Train once, then `requests` deletion requests of `batch` random ids each."""
    config = SisaConfig(dataset, shards, slices, min(shards, 4), learner, epochs, seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        deal_partitions(root, config)
        coordinator = SisaCoordinator(root, LocalTransport(root, config.clients))
        report, train_s = _timed(lambda: coordinator.train(config))
        train_rows = sum(len(ids) for ids in coordinator.registry["shard_ids"].values())
        test = coordinator.owned("test")
        majority = coordinator.predict(test.features).majority
        accuracy = float(np.mean(majority == test.labels))
        rng = np.random.default_rng([seed, shards, batch])
        samples, seconds, retrained = [], [], []
        for _ in range(requests):
            held = sorted(i for ids in coordinator.registry["shard_ids"].values() for i in ids)
            ids = rng.choice(held, size=batch, replace=False).tolist()
            forgot, elapsed = _timed(lambda ids=ids: coordinator.forget(ids))
            samples.append(forgot["samples"])
            seconds.append(elapsed)
            retrained.append(len(forgot["applied"]))
    full = report["train_samples"]
    # A single model trained with the same epochs on all rows: epochs x rows.
    monolithic = config.epochs * train_rows
    return {
        "shards": shards, "slices": slices, "ids_per_request": batch, "requests": requests,
        "full_sisa_samples": full, "monolithic_samples": monolithic,
        "median_forget_samples": float(np.median(samples)),
        "median_fraction_of_full": float(np.median(samples)) / full,
        "speedup_vs_full_sisa": full / max(float(np.median(samples)), 1.0),
        "speedup_vs_monolithic": monolithic / max(float(np.median(samples)), 1.0),
        "median_shards_retrained": float(np.median(retrained)),
        "test_accuracy_majority": accuracy, "train_seconds": train_s,
        "median_forget_seconds": float(np.median(seconds)),
    }


def render_cost(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| S | R | ids/request | full SISA retrain (samples) | forget, median (samples) "
        "| fraction | speed-up vs full SISA | vs one model | shards retrained | forget s "
        "| test acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shards']} | {r['slices']} | {r['ids_per_request']} | {r['full_sisa_samples']} "
            f"| {r['median_forget_samples']:.0f} | {r['median_fraction_of_full']:.3f} "
            f"| {r['speedup_vs_full_sisa']:.1f}x | {r['speedup_vs_monolithic']:.1f}x "
            f"| {r['median_shards_retrained']:.0f} | {r['median_forget_seconds']:.3f} "
            f"| {r['test_accuracy_majority']:.3f} |"
        )
    return "\n".join(lines)


def fitting_objective_line(result: dict[str, Any]) -> str:
    """Median objective of (a), (b), (c) on the calibration rows they were fitted on."""
    objective = result["setup"]["objective"]
    names = METHODS[5:]
    runs = result["runs"]
    medians = [np.median([r["calibration"][n][objective] for r in runs]) for n in names]
    c_ge_b = sum(
        r["calibration"][names[2]][objective] >= r["calibration"][names[1]][objective] - 1e-9
        for r in runs
    )
    return (
        f"{objective} on the calibration (fitting) rows, median: (a) {medians[0]:.4f}, "
        f"(b) {medians[1]:.4f}, (c) {medians[2]:.4f}; (c) >= (b) in {c_ge_b} of {len(runs)} seeds"
    )


PAPER_SETTINGS = (("adult", "sex"), ("adult", "race"), ("german", "sex"), ("german", "age"))


def paper_claim(seeds: int, shards: int, out_dir: Path, settings: list[str] | None = None) -> str:
    """The FairSISA claim's measurement: S shards, accuracy objective, `seeds` seeds per
    setting. Each seed's result is saved under `out_dir` and reused on a rerun (resumable)."""
    parts = []
    chosen = settings or [f"{d}/{g}" for d, g in PAPER_SETTINGS]
    for setting in chosen:
        # DATA/GROUP[/LEARNER]: the transformer path trains tiny-bert for 2 epochs per slice.
        dataset, sensitive, learner = (setting.split("/") + ["sgd"])[:3]
        setup = FairnessSetup(
            dataset=dataset, sensitive=sensitive, shards=shards, slices=4, learner=learner,
            epochs=5 if learner == "sgd" else 2, objective="accuracy",
            seeds=tuple(range(seeds)), score_decimals=3,
        )
        suffix = "" if learner == "sgd" else f"-{learner}"
        folder = out_dir / f"{dataset}-{sensitive}-S{shards}{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        runs = []
        for seed in setup.seeds:
            path = folder / f"seed{seed}.json"
            if not path.is_file():
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    run = run_seed(setup, seed, Path(tmp))
                seconds = time.perf_counter() - started
                run["seconds"] = seconds
                path.write_text(json.dumps(run, default=str))
                print(f"{dataset}/{sensitive} seed {seed}: {seconds:.0f} s", file=sys.stderr)
            runs.append(json.loads(path.read_text()))
        result = summarise(setup, runs)
        parts.append(
            f"### {dataset}, group {sensitive}, S={shards}, R=4, {learner}, accuracy objective, "
            f"{seeds} seeds (test split; medians)\n\n{render_table(result)}"
        )
    return "\n\n".join(parts)


def tradeoff_section(dataset: str, sensitive: str, shards: int, seed: int, figure: Path) -> str:
    """Accuracy against the LP's EOD tolerance for (a), (b), (c) on one seed (fitted on
    calibration, scored on test), and the per-group table of (c) at tolerance 0."""
    from llm_modules.fairness.estimator import (
        FairSISAClassifier,
        metric_frame,
        plot_tradeoff,
        render_metric_frame,
        tradeoff,
    )
    from server.sisa_fairness import _train_and_score

    setup = FairnessSetup(dataset=dataset, sensitive=sensitive, shards=shards, slices=4)
    with tempfile.TemporaryDirectory() as tmp:
        coordinator, (votes_cal, votes_test) = _train_and_score(
            setup, shards, 4, seed, Path(tmp)
        )
        cal, test = coordinator.owned("calib"), coordinator.owned("test")
    g_cal, g_test = cal.groups[sensitive], test.groups[sensitive]
    curves = tradeoff(votes_cal, cal.labels, g_cal, votes_test, test.labels, g_test)
    plot_tradeoff(curves, figure, f"{dataset}, group {sensitive}, S={shards}, seed {seed}")
    model = FairSISAClassifier().fit(votes_cal, cal.labels, sensitive_features=g_cal)
    frame = metric_frame(test.labels, model.predict_proba(votes_test, sensitive_features=g_test)
                         [:, 1], g_test)
    lines = ["| tolerance | " + " | ".join(f"{UNLEARN_NAMES[m]} acc. / EOD" for m in curves)
             + " |", "|---|" + "---|" * len(curves)]
    for k, point in enumerate(next(iter(curves.values()))):
        lines.append(f"| {point['tolerance']:.2f} | " + " | ".join(
            f"{curves[m][k]['accuracy']:.3f} / {curves[m][k]['equalized_odds_difference']:.3f}"
            for m in curves) + " |")
    return (
        f"### Trade-off: {dataset}, group {sensitive}, S={shards}, seed {seed} (test split)\n\n"
        + "\n".join(lines) + f"\n\n![trade-off]({figure.relative_to('docs/benchmarks')})"
        + "\n\nPer group, (c) at tolerance 0 (`metric_frame`, test split):\n\n"
        + render_metric_frame(frame)
    )


UNLEARN_NAMES = {"constituent": "(a)", "aggregate": "(b)", "votes": "(c)"}


def unlearning(seeds: int, shards: int, out_dir: Path, settings: list[str], steps: int,
               share: float) -> str:
    """Fairness through unlearning (resumable per seed under `out_dir`)."""
    parts = []
    for setting in settings:
        dataset, sensitive, learner = (setting.split("/") + ["sgd"])[:3]
        for concentrated in (False, True):
            setup = FairnessSetup(dataset=dataset, sensitive=sensitive, shards=shards, slices=4,
                                  learner=learner, epochs=5 if learner != "tiny-bert" else 2)
            folder = out_dir / f"unlearn-{dataset}-{sensitive}-{learner}-S{shards}"
            folder.mkdir(parents=True, exist_ok=True)
            runs = []
            for seed in range(seeds):
                path = folder / f"seed{seed}-{'group' if concentrated else 'random'}.json"
                if not path.is_file():
                    with tempfile.TemporaryDirectory() as tmp:
                        run = run_unlearning(setup, seed, Path(tmp), steps, share, concentrated)
                    path.write_text(json.dumps(run, default=str))
                    print(f"unlearning {setting} seed {seed} "
                          f"{'group' if concentrated else 'random'}", file=sys.stderr)
                runs.append(json.loads(path.read_text()))
            parts.append(render_unlearning(setting, shards, concentrated, runs))
    return "\n\n".join(parts)


def render_unlearning(setting: str, shards: int, concentrated: bool, runs: list[Any]) -> str:
    how = "all from group 1" if concentrated else "random"
    lines = [
        f"### {setting}, S={shards}: forget {runs[0]['share_per_step']:.0%} of the training "
        f"and calibration rows per step ({how}), {len(runs)} seeds, medians (test split)",
        "",
        "| step | forgotten | " + " | ".join(
            f"{n} acc. | {n} EOD" for n in UNLEARN_NAMES.values()
        ) + " | shards retrained | refit = scratch |",
        "|---|---|" + "---|---|" * len(UNLEARN_NAMES) + "---|---|",
    ]
    for k in range(len(runs[0]["sequence"])):
        steps = [r["sequence"][k] for r in runs]
        cells = []
        for m in UNLEARN_NAMES:
            acc = np.median([s["test"][m]["accuracy"] for s in steps])
            eod = np.median([s["test"][m]["equalized_odds_difference"] for s in steps])
            cells += [f"{acc:.3f}", f"{eod:.3f}"]
        retrained = np.median([s.get("shards_retrained", 0) for s in steps])
        exact = sum(s.get("refit_equals_scratch", True) for s in steps)
        lines.append(
            f"| {k} | {np.median([s['forgotten_share'] for s in steps]):.1%} | "
            + " | ".join(cells) + f" | {retrained:.0f} | {exact}/{len(steps)} |"
        )
    singles = [x for r in runs for x in r["single"]]
    shard_s = float(np.median([r["train_one_shard_seconds"] for r in runs]))
    lines += ["", render_refit_cost(singles, shard_s)]
    return "\n".join(lines)


def render_refit_cost(singles: list[dict[str, Any]], shard_s: float) -> str:
    """The one-id forgets' refit cost: medians over `singles` (see
    server.sisa_fairness._Deployed.one_id_forget)."""
    if any("query_seconds" not in x for x in singles):
        raise SystemExit("cached runs predate votes in the forget reply: rerun with a new --cache")

    def med(values: list[float]) -> float:
        return float(np.median(values))

    retrain = med([x["retrain_seconds"] for x in singles])
    scoring = med([x["query_seconds"] for x in singles])
    requery = med([x["requery_seconds"] for x in singles])
    exact = sum(x["reply_equals_requery"] for x in singles)
    # Runs cached before the host timed its own retrain lack that baseline.
    host = all("host_retrain_seconds" in x for x in singles)

    def share(key: str, m: str) -> str:
        return f"{100 * med([x[key][m] for x in singles]):.3f}%" if key in singles[0] else "n/a"

    holder = (
        f"the shard's holder spent a median "
        f"{med([x['host_retrain_seconds'] for x in singles]) * 1e3:.1f} ms on it, "
        f"{med([x['host_retrain_cpu_seconds'] for x in singles]) * 1e3:.1f} ms of CPU time "
        "(timed on the host: reading the shard, retraining from the checkpoint, writing "
        "checkpoints and files; the rest is the coordinator's routing and bookkeeping). "
        if host else ""
    )
    lines = [
        f"One-id forgets ({len(singles)}): the forget without the scoring took a median "
        f"{retrain * 1e3:.1f} ms; {holder}Training one shard from scratch took "
        f"{shard_s * 1e3:.1f} ms. Inside the forget the host also scored the coordinator's "
        f"calibration rows with the retrained model still in memory: median "
        f"{scoring * 1e3:.2f} ms. The whole refit is that scoring plus the post-processor's "
        "update ((c) first, then (a) and (b)); medians of its share of the host's retrain (wall "
        "and CPU time), of the forget without the scoring, and of training one shard from "
        "scratch:",
        "",
        "| post-processor | update, median | **whole refit / host's retrain** | the same in CPU "
        "time | whole refit / forget without scoring | whole refit / one shard from scratch "
        "| forgets that re-solved the LP |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, n in UNLEARN_NAMES.items():
        lines.append(
            f"| {n} | {med([x['refit_update_seconds'][m] for x in singles]) * 1e3:.3f} ms "
            f"| **{share('refit_fraction_of_host_retrain', m)}** "
            f"| {share('refit_cpu_fraction_of_host_retrain', m)} "
            f"| {share('refit_fraction_of_forget', m)} "
            f"| {share('refit_fraction_of_training_one_shard', m)} "
            f"| {sum(x['refit_resolved'][m] for x in singles)}/{len(singles)} |"
        )
    lines.append(
        f"\n(For comparison, querying the retrained shard again after the forget, as before "
        f"(the host reloads its checkpoint): median {requery * 1e3:.1f} ms; its probabilities "
        f"equal the reply's exactly in {exact} of {len(singles)} forgets.)"
    )
    return "\n".join(lines)


REFIT_HISTORY = Path("docs/benchmarks/sisa_refit.json")


def refit_cost(seeds: int, shards: int, requests: int, settings: list[str],
               out: Path, record: str | None = None) -> str:
    """Only the one-id forgets and the refits after them (`requests` per seed), per
    setting; raw results written to `out` (JSON) and, with `record`, added under that name
    to the history in docs/benchmarks/sisa_refit.json, marked current."""
    from server.sisa_fairness import run_refit_cost

    parts, raw = [], {}
    load = [round(v, 2) for v in os.getloadavg()]
    for setting in settings:
        dataset, sensitive, learner = (setting.split("/") + ["sgd"])[:3]
        setup = FairnessSetup(dataset=dataset, sensitive=sensitive, shards=shards, slices=4,
                              learner=learner, epochs=5 if learner != "tiny-bert" else 2)
        runs = []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(run_refit_cost(setup, seed, Path(tmp), requests))
        raw[setting] = runs
        singles = [x for r in runs for x in r["single"]]
        shard_s = float(np.median([r["train_one_shard_seconds"] for r in runs]))
        exact = sum(r["refit_equals_scratch"] for r in runs)
        parts.append(
            f"##### Refit cost: {dataset}/{sensitive}, S={shards}, R=4, {learner}, {seeds} "
            f"seeds x {requests} "
            f"one-id forgets (refit = scratch in {exact}/{seeds} seeds)\n\n"
            + render_refit_cost(singles, shard_s)
        )
    load_end = [round(v, 2) for v in os.getloadavg()]
    parts.append(f"(load average 1/5/15 min: {load} at the start, {load_end} at the end)")
    raw["meta"] = {"load_average_start": load, "load_average_end": load_end,
                   "argv": sys.argv[1:]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, default=str))
    print(f"wrote {out}", file=sys.stderr)
    if record:
        history = json.loads(REFIT_HISTORY.read_text()) if REFIT_HISTORY.is_file() else {}
        history[record] = raw
        history["current"] = record  # the run the docs quote; the others are history
        REFIT_HISTORY.write_text(json.dumps(history, default=str))
        print(f"added {record} to {REFIT_HISTORY}", file=sys.stderr)
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15, help="deletion requests per setting")
    parser.add_argument("--seeds", type=int, default=20, help="FairSISA repetitions")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_sisa.json"))
    parser.add_argument("--skip-fairness", action="store_true", help="only the cost tables")
    parser.add_argument(
        "--transformer", choices=("tiny-bert", "minilm"), help="only time this learner on text"
    )
    parser.add_argument(
        "--paper", action="store_true",
        help="only the claim's measurement (Adult and German, S=20), resumable under --cache",
    )
    parser.add_argument("--paper-shards", type=int, default=20)
    parser.add_argument("--paper-settings", nargs="*", help="e.g. adult/sex german/age")
    parser.add_argument("--cache", type=Path, default=Path("runs/bench_sisa_cache"))
    parser.add_argument("--unlearning", nargs="*", metavar="DATA/GROUP[/LEARNER]",
                        help="only fairness through unlearning, e.g. adult/sex german/sex")
    parser.add_argument("--unlearning-shards", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--refit-cost", nargs="*", metavar="DATA/GROUP[/LEARNER]",
                        help="only the one-id forgets and the post-processors' refit cost, "
                        "e.g. adult/sex german/sex adult/sex/mlp (default learner sgd; --seeds x "
                        "--refit-requests forgets each)")
    parser.add_argument("--refit-requests", type=int, default=20)
    parser.add_argument("--refit-out", type=Path, default=Path("runs/bench_sisa_refit.json"))
    parser.add_argument("--refit-record", metavar="NAME",
                        help="also add the run to docs/benchmarks/sisa_refit.json as NAME, "
                        "marked current")
    parser.add_argument("--tradeoff", nargs="*", metavar="DATA/GROUP",
                        help="only the accuracy / EOD-tolerance trade-off (seed 0, S=20)")
    args = parser.parse_args()
    if args.tradeoff:
        for setting in args.tradeoff:
            dataset, sensitive = setting.split("/")
            figure = Path(f"docs/benchmarks/figures/sisa_tradeoff_{dataset}_{sensitive}.png")
            print(tradeoff_section(dataset, sensitive, args.paper_shards, 0, figure) + "\n")
        return 0
    if args.refit_cost:
        print(refit_cost(args.seeds, args.unlearning_shards, args.refit_requests,
                         args.refit_cost, args.refit_out, args.refit_record))
        return 0
    if args.unlearning:
        print(unlearning(args.seeds, args.unlearning_shards, args.cache, args.unlearning,
                         args.steps, args.share))
        return 0
    if args.paper:
        print(paper_claim(args.seeds, args.paper_shards, args.cache, args.paper_settings))
        return 0
    if args.transformer:
        row = cost_rows(5, 3, 1, args.requests, 0, "text", args.transformer, 3)
        print(f"## Retraining cost of forget, generated text, {args.transformer}, 3 epochs/slice")
        print(render_cost([row]))
        print(f"\nfull training {row['train_seconds']:.1f} s")
        return 0
    cost = [
        cost_rows(shards, slices, batch, args.requests, seed=0)
        for shards in (5, 10, 20)
        for slices, batch in ((1, 1), (4, 1), (4, 10))
    ]
    print("## Retraining cost of forget (German credit, 500 training rows, SGD, 5 epochs/slice)")
    print(render_cost(cost))
    fairness: dict[str, Any] = {}
    settings = [
        ("german", "sex", args.seeds),
        ("german", "age", args.seeds),
        ("synthetic", "group", max(args.seeds // 2, 1)),
    ]
    if args.skip_fairness:
        settings = []
    for dataset, sensitive, seeds in settings:
        for objective in ("accuracy", "balanced_accuracy"):
            setup = FairnessSetup(
                dataset=dataset, sensitive=sensitive, objective=objective,
                seeds=tuple(range(seeds)),
            )
            result = run_fairness(setup)
            fairness[f"{dataset}/{sensitive}/{objective}"] = result
            print(f"\n## FairSISA, {dataset}, group {sensitive}, LP objective {objective}, "
                  f"S=5, median of {seeds} seeds (test split)")
            print(render_table(result))
            checks = [r["lp_vs_fairlearn"] for r in result["runs"]]
            gaps = [c["lp_on_calibration"] - c["fairlearn_on_calibration"] for c in checks]
            print(f"\n(c) smallest test EOD among (a)-(c) in {result['c_smallest_eod_seeds']} of "
                  f"{seeds} seeds; LP minus fairlearn objective on calibration: "
                  f"min {min(gaps):.2e}, max {max(gaps):.2e}")
            print(fitting_objective_line(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cost": cost, "fairness": fairness}, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
