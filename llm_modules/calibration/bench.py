"""The LinC benchmark: the main grid (grid.py), then the sensitivity of accuracy to the
demonstrations' order and label proportions, pooled reliability diagrams and entropy
histograms, and federated LinC against pooled and owner-alone fitting."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np

from federation.errors import Pv4fadError
from llm_modules.calibration.calibrators import LinC
from llm_modules.calibration.federated import CalibrationJob, Federate, FederatedLinCConfig
from llm_modules.calibration.grid import (
    BenchSettings,
    BenchTask,
    Log,
    Rates,
    calibrated,
    demonstrations_for,
    evaluate,
    methods,
    over_seeds,
    rates_record,
    run_grid,
    score_prompt,
    summarise,
    tune_linc,
    validation_subset,
)
from llm_modules.calibration.metrics import (
    entropy_histogram,
    expected_calibration_error,
    reliability,
    spread,
)
from llm_modules.calibration.prompts import permutations, with_label_counts
from llm_modules.calibration.scoring import LabelScorer


def label_count_patterns(classes: Sequence[str], shots: int) -> list[dict[str, int]]:
    """Every class alone, then as balanced as possible with each class favoured in turn."""
    patterns = [{c: (shots if c == chosen else 0) for c in classes} for chosen in classes]
    base, extra = divmod(shots, len(classes))
    for start in range(len(classes)):
        favoured = {classes[(start + i) % len(classes)] for i in range(extra)}
        pattern = {c: base + (c in favoured) for c in classes}
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def sensitivity(task: BenchTask, scorer: LabelScorer, settings: BenchSettings, rates: Rates,
                log: Log) -> dict:
    """Per method, the spread (std, max - min) of accuracy over orders of the same
    demonstrations and over label proportions, median over seeds and templates."""
    shots = settings.sensitivity_shots
    found: dict[str, dict[str, list[dict[str, float]]]] = {"permutations": {},
                                                          "proportions": {}}
    for seed in settings.seeds:
        splits = task.splits(seed)
        validation = validation_subset(splits, max(settings.sizes), seed)
        chosen = methods(settings, rates, shots, seed)
        variants = {
            "permutations": permutations(demonstrations_for(splits.pool, shots, seed),
                                         settings.permutations, seed),
            "proportions": [with_label_counts(splits.pool, counts, seed) for counts in
                            label_count_patterns(task.prompts[0].classes, shots)],
        }
        for spec in task.prompts:
            for kind, demo_sets in variants.items():
                results = [evaluate(score_prompt(scorer, spec, demos, validation, splits.test),
                                    chosen) for demos in demo_sets]
                for name in results[0]:
                    found[kind].setdefault(name, []).append(
                        spread([r[name]["accuracy"] for r in results]))
        log(f"sensitivity: seed {seed} done")
    return {
        kind: {name: {stat: statistics.median(s[stat] for s in spreads)
                      for stat in ("std", "range", "mean")}
               for name, spreads in by_method.items()}
        for kind, by_method in found.items()
    }


def diagrams(task: BenchTask, scorer: LabelScorer, settings: BenchSettings, rates: Rates
             ) -> dict:
    """Reliability bins and entropy histograms pooled over seeds and templates, for no
    calibration, contextual calibration and LinC at the smallest validation size."""
    wanted = ("none", "contextual", f"linc@{min(settings.sizes)}")
    out: dict = {}
    for shots in sorted({0, settings.sensitivity_shots} & set(settings.shots)):
        pooled: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        labels: list[np.ndarray] = []
        for seed in settings.seeds:
            splits = task.splits(seed)
            validation = validation_subset(splits, max(settings.sizes), seed)
            chosen = [m for m in methods(settings, rates, shots, seed) if m[0] in wanted]
            for spec in task.prompts:
                scored = score_prompt(scorer, spec, demonstrations_for(splits.pool, shots, seed),
                                      validation, splits.test)
                labels.append(scored.test_labels)
                for method in chosen:
                    pooled[method[0]].append(calibrated(scored, method))
        y = np.concatenate(labels)
        out[str(shots)] = {
            name: {"reliability": reliability(np.concatenate(p), y),
                   "entropy": entropy_histogram(np.concatenate(p)),
                   "ece": expected_calibration_error(np.concatenate(p), y)}
            for name, p in pooled.items()
        }
    return out


def federated_comparison(task: BenchTask, scorer: LabelScorer, settings: BenchSettings,
                         rates: Rates, federate: Federate, log: Log) -> dict:
    """FedAvg LinC (owners hold equal, interleaved shares of the validation prefix) against
    LinC fitted on the pooled prefix and against each owner fitting alone on its share."""
    owners = settings.federated_owners
    jobs, shares, scored_by_job = [], [{} for _ in range(owners)], {}
    for seed in settings.seeds:
        splits = task.splits(seed)
        drawn = validation_subset(splits, max(settings.sizes), seed)
        for spec, shots, size in itertools.product(task.prompts, settings.federated_shots,
                                                   settings.federated_sizes):
            demos = demonstrations_for(splits.pool, shots, seed)
            scored = score_prompt(scorer, spec, demos, drawn[:size], splits.test)
            job = CalibrationJob(f"{seed}-{spec.name}-{shots}-{size}", spec, tuple(demos),
                                 scored.p_cf, rates[(size, shots)])
            jobs.append(job)
            scored_by_job[job.id] = (seed, shots, size, scored)
            for owner in range(owners):
                shares[owner][job.id] = drawn[:size][owner::owners]
    config = FederatedLinCConfig(str(task.model_path), local_epochs=owners,
                                 rounds=settings.linc_epochs,
                                 cache_path=str(scorer.cache.path or ""))
    log(f"federated: {len(jobs)} jobs, {owners} owners, {config.rounds} rounds")
    weights = federate(config, jobs, shares)
    return _compare(jobs, scored_by_job, weights, owners, settings)


def _compare(jobs: Sequence[CalibrationJob], scored_by_job: dict, weights: dict, owners: int,
             settings: BenchSettings) -> dict:
    per_seed: dict[tuple[int, int, int], dict[str, list[float]]] = {}
    gaps = []
    for job in jobs:
        seed, shots, size, scored = scored_by_job[job.id]
        y = scored.test_labels
        W, b = weights[job.id]
        federated = LinC(W=W, b=b).transform(scored.test)
        pooled = LinC(job.lr, settings.linc_epochs, seed=seed).fit(
            scored.validation, scored.validation_labels, p_cf=scored.p_cf)
        gaps.append(float(np.abs(pooled.W - W).max()))
        alone = [np.mean(LinC(job.lr, settings.linc_epochs, seed=seed).fit(
            scored.validation[i::owners], scored.validation_labels[i::owners],
            p_cf=scored.p_cf).transform(scored.test).argmax(1) == y) for i in range(owners)]
        row = per_seed.setdefault((size, shots, seed), {})
        for name, value in (
            ("pooled_accuracy", np.mean(pooled.transform(scored.test).argmax(1) == y)),
            ("federated_accuracy", np.mean(federated.argmax(1) == y)),
            ("owner_alone_accuracy", np.mean(alone)),
            ("pooled_ece", expected_calibration_error(pooled.transform(scored.test), y)),
            ("federated_ece", expected_calibration_error(federated, y)),
        ):
            row.setdefault(name, []).append(float(value))
    out: dict = {"max_abs_W_difference": max(gaps)}
    for size, shots in itertools.product(settings.federated_sizes, settings.federated_shots):
        seeds = [per_seed[(size, shots, s)] for s in settings.seeds]
        out[f"{size}/{shots}"] = {name: over_seeds([statistics.fmean(row[name]) for row in seeds])
                                  for name in seeds[0]}
    return out


def run_benchmark(
    settings: BenchSettings,
    task: BenchTask,
    scorer: LabelScorer,
    log: Log = lambda _m: None,
    federate: Federate | None = None,
    keep: Callable[[dict], None] = lambda _r: None,
) -> dict:
    """Tune LinC's learning rate (built-in task) or take it, run the grid, sensitivity,
    diagrams and (with `federate`) the federated comparison; returns everything with the
    wall time of each part. `keep` receives the result so far after each part, so a
    failure loses no finished part."""
    if settings.linc_lr is None and not task.tunable:
        raise Pv4fadError("a benchmark on your own data needs LinC's learning rate (--lr): "
                          "tuning needs development data of its own")
    result: dict = {"task": task.name, "settings": asdict(settings), "seconds": {}}
    started = time.perf_counter()

    def done(name: str, value: dict) -> dict:
        nonlocal started
        result[name] = value
        result["seconds"][name] = time.perf_counter() - started
        keep(result)
        started = time.perf_counter()
        return value

    if settings.linc_lr is None:
        rates, table = tune_linc(task, scorer, settings, log)
        done("tuning", {"lr": rates_record(rates), "grid_accuracy": table})
    else:
        rates = {(n, k): settings.linc_lr for n in settings.sizes for k in settings.shots}
        done("tuning", {"lr": rates_record(rates), "fixed": True})
    rows = run_grid(task, scorer, settings, rates, log)
    result["summary"] = summarise(rows)
    done("rows", rows)
    done("sensitivity", sensitivity(task, scorer, settings, rates, log))
    done("diagrams", diagrams(task, scorer, settings, rates))
    if federate is not None:
        done("federated", federated_comparison(task, scorer, settings, rates, federate, log))
    return result
