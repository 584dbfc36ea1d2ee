"""The built-in unlearning benchmark: every method on several seeds and learning rates.

Each seed generates its own entities and trains its own target and retain-only models; each
variant (method, mask, SPUNGE merge) runs from the same target at every learning rate, so
the forget-quality / utility trade-off is compared along a curve, not at one point.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_modules.models import TinyModelConfig, load_causal_lm
from llm_modules.unlearning.benchmark import BenchmarkConfig, build_benchmark
from llm_modules.unlearning.data import Fact
from llm_modules.unlearning.evaluate import score_splits
from llm_modules.unlearning.metrics import Scores, report
from llm_modules.unlearning.spunge import spunge
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn
from llm_modules.unlearning.wagle import build_mask

HEADLINE = (
    "forget_quality",
    "model_utility",
    "forget_probability",
    "forget_rouge",
    "retain_probability",
    "world_probability",
    "privleak",
)


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark: a method, optionally masked or split-unlearned-merged."""

    name: str
    method: str
    mask: str | None = None
    ratio: float = 1.0
    merge: str | None = None


VARIANTS = (
    Variant("gradascent", "gradascent"),
    Variant("graddiff", "graddiff"),
    Variant("graddiff+wagle0.95", "graddiff", "wagle", 0.95),
    Variant("graddiff+wagle0.8", "graddiff", "wagle", 0.8),
    Variant("npo", "npo"),
    Variant("npo+wagle0.95", "npo", "wagle", 0.95),
    Variant("npo+wagle0.8", "npo", "wagle", 0.8),
    Variant("npo+random0.8", "npo", "random", 0.8),
    Variant("npo+magnitude0.8", "npo", "magnitude", 0.8),
    Variant("npo+forgetgrad0.8", "npo", "forget-gradient", 0.8),
    Variant("spunge-npo-ties", "npo", merge="ties"),
    Variant("spunge-npo-ta", "npo", merge="task-arithmetic"),
)


@dataclass(frozen=True)
class BenchSettings:
    seeds: tuple[int, ...]
    learning_rates: tuple[float, ...]
    data: BenchmarkConfig
    unlearn: UnlearnConfig


def settings(quick: bool, seeds: int | None = None) -> BenchSettings:
    """Quick: 40 entities, 3 seeds; full: 100 entities (TOFU's 10 % forget), 5 seeds."""
    if quick:
        data = BenchmarkConfig()
        return BenchSettings(
            tuple(range(seeds or 3)), (2e-4, 4e-4, 8e-4), data, UnlearnConfig(epochs=10)
        )
    data = BenchmarkConfig(
        n_entities=100, n_forget=10, n_holdout=10, model=TinyModelConfig(width=192)
    )
    return BenchSettings(
        tuple(range(seeds or 5)), (1e-4, 2e-4, 4e-4, 8e-4), data, UnlearnConfig(epochs=10)
    )


def run_variant(
    variant: Variant,
    target: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, list[Fact]],
    config: UnlearnConfig,
) -> PreTrainedModel:
    """Unlearn the forget split from a copy of `target` as `variant` says."""
    model = copy.deepcopy(target)
    config = replace(config, method=variant.method)
    forget, retain = splits["forget"], splits["retain"]

    def mask_for(worker: PreTrainedModel, subset: list[Fact]):
        if variant.mask is None:
            return None
        return build_mask(
            variant.mask, worker, tokenizer, subset, retain, variant.ratio, seed=config.seed
        )

    if variant.merge is not None:
        return spunge(model, tokenizer, forget, retain, config, "field", variant.merge,
                      mask_for=mask_for if variant.mask else None)
    return unlearn(model, tokenizer, forget, retain, config, mask=mask_for(model, forget))


def run_seed(
    seed: int, bench: BenchSettings, root: Path | None, log: Callable[[str], None]
) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {lr: metric report}} plus the target and retain-only rows, for one seed."""
    paths = build_benchmark(replace(bench.data, seed=seed), root, log=log)
    splits = paths.load_splits()
    retain_model, tokenizer = load_causal_lm(paths.retain_model)
    target, _ = load_causal_lm(paths.target)
    reference: Scores = score_splits(retain_model, tokenizer, splits)
    rows = {
        "target": {"-": report(score_splits(target, tokenizer, splits), reference)},
        "retain-only": {"-": report(reference, reference)},
    }
    for variant in VARIANTS:
        rows[variant.name] = {}
        for lr in bench.learning_rates:
            config = replace(bench.unlearn, lr=lr, seed=seed)
            model = run_variant(variant, target, tokenizer, splits, config)
            scores = score_splits(model, tokenizer, splits)
            rows[variant.name][f"{lr:g}"] = report(scores, reference)
        log(f"seed {seed} {variant.name}: " + ", ".join(
            f"lr {lr} FQ {r['forget_quality']:.3f} MU {r['model_utility']:.3f}"
            for lr, r in rows[variant.name].items()))
    return rows


def summarise(per_seed: list[dict[str, dict[str, dict[str, float]]]]) -> dict:
    """Median, min and max across seeds of each headline metric, per variant and lr."""
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for variant, by_lr in per_seed[0].items():
        summary[variant] = {}
        for lr in by_lr:
            summary[variant][lr] = {}
            for metric in HEADLINE:
                values = [rows[variant][lr][metric] for rows in per_seed]
                summary[variant][lr][metric] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
    return summary


def run_benchmark(
    quick: bool,
    seeds: int | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Run every variant on every seed; returns settings, per-seed rows, summary, seconds."""
    bench = settings(quick, seeds)
    started = time.perf_counter()
    per_seed = [run_seed(seed, bench, root, log) for seed in bench.seeds]
    return {
        "quick": quick,
        "seeds": list(bench.seeds),
        "learning_rates": list(bench.learning_rates),
        "epochs": bench.unlearn.epochs,
        "per_seed": per_seed,
        "summary": summarise(per_seed),
        "seconds": time.perf_counter() - started,
    }
