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

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import Pv4fadError
from llm_modules.models import load_causal_lm
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


FQ_THRESHOLD = 0.05  # forget quality (KS p-value) at which a run counts as "forgotten"


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark: a method, optionally masked or split-unlearned-merged."""

    name: str
    method: str
    mask: str | None = None
    ratio: float = 1.0
    merge: str | None = None
    full_only: bool = False  # left out of --quick to keep it short


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
    Variant("npo+wagle0.5", "npo", "wagle", 0.5, full_only=True),
    Variant("npo+random0.5", "npo", "random", 0.5, full_only=True),
    Variant("spunge-npo-ties", "npo", merge="ties"),
    Variant("spunge-npo-ta", "npo", merge="task-arithmetic"),
    Variant("rmu", "rmu"),
)


@dataclass(frozen=True)
class BenchSettings:
    seeds: tuple[int, ...]
    learning_rates: tuple[float, ...]
    data: BenchmarkConfig
    unlearn: UnlearnConfig
    variants: tuple[Variant, ...]
    retain_eval: int | None = None  # evaluate on this many retain facts (TOFU: a subset)


def settings(quick: bool, seeds: int | None = None) -> BenchSettings:
    """Quick: 40 entities, 3 seeds; full: 100 entities (TOFU's 10 % forget), 5 seeds."""
    if seeds is not None and seeds < 1:
        raise Pv4fadError(f"--seeds must be at least 1, got {seeds}")
    if quick:
        data = BenchmarkConfig()
        quick_variants = tuple(v for v in VARIANTS if not v.full_only)
        return BenchSettings(
            tuple(range(seeds or 3)), (2e-4, 4e-4, 8e-4), data, UnlearnConfig(epochs=10),
            quick_variants,
        )
    data = BenchmarkConfig(n_entities=100, n_forget=10, n_holdout=10)
    return BenchSettings(
        tuple(range(seeds or 5)), (2e-4, 4e-4, 8e-4, 1.6e-3), data, UnlearnConfig(epochs=10),
        VARIANTS, retain_eval=80,
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
    # Unlearning uses the whole retain split; evaluation may use its first facts only.
    evaluated = {**splits, "retain": splits["retain"][: bench.retain_eval]}
    retain_model, tokenizer = load_causal_lm(paths.retain_model)
    target, _ = load_causal_lm(paths.target)
    reference: Scores = score_splits(retain_model, tokenizer, evaluated)
    rows = {
        "target": {"-": report(score_splits(target, tokenizer, evaluated), reference)},
        "retain-only": {"-": report(reference, reference)},
    }
    for variant in bench.variants:
        rows[variant.name] = {}
        for lr in bench.learning_rates:
            config = replace(bench.unlearn, lr=lr, seed=seed)
            model = run_variant(variant, target, tokenizer, splits, config)
            scores = score_splits(model, tokenizer, evaluated)
            rows[variant.name][f"{lr:g}"] = report(scores, reference)
        log(f"seed {seed} {variant.name}: " + ", ".join(
            f"lr {lr} FQ {r['forget_quality']:.3f} MU {r['model_utility']:.3f}"
            for lr, r in rows[variant.name].items()))
    return rows


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(per_seed: list[dict[str, dict[str, dict[str, float]]]]) -> dict:
    """Median, min and max across seeds of each headline metric, per variant and lr."""
    return {
        variant: {
            lr: {m: _spread([rows[variant][lr][m] for rows in per_seed]) for m in HEADLINE}
            for lr in by_lr
        }
        for variant, by_lr in per_seed[0].items()
    }


def utility_at_forgetting(
    per_seed: list[dict[str, dict[str, dict[str, float]]]], threshold: float = FQ_THRESHOLD
) -> dict[str, dict[str, float]]:
    """Per variant: the best model utility over learning rates among runs whose forget
    quality is at least `threshold` (0 when none is), as median / min / max over seeds.

    One number per trade-off curve: how much utility survives once the forget set's truth
    ratios can no longer be told from the retain-only model's at that significance level.
    """
    out = {}
    for variant in per_seed[0]:
        best = [
            max(
                (r["model_utility"] for r in rows[variant].values()
                 if r["forget_quality"] >= threshold),
                default=0.0,
            )
            for rows in per_seed
        ]
        out[variant] = _spread(best)
    return out


def run_benchmark(
    quick: bool,
    seeds: int | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
    on_seed: Callable[[dict], None] | None = None,
) -> dict:
    """Run every variant on every seed; returns settings, per-seed rows, summary, seconds.
    `on_seed` receives the result so far after each seed (to keep partial results)."""
    bench = settings(quick, seeds)
    started = time.perf_counter()
    # Tiny models gain nothing from intra-op threads, and one thread makes runs reproducible
    # bit for bit (and matches the single-CPU federated workers).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    per_seed: list[dict[str, dict[str, dict[str, float]]]] = []
    try:
        for seed in bench.seeds:
            per_seed.append(run_seed(seed, bench, root, log))
            result = _result(quick, bench, per_seed, time.perf_counter() - started)
            if on_seed is not None:
                on_seed(result)
    finally:
        torch.set_num_threads(threads)
    return result


def _result(quick: bool, bench: BenchSettings, per_seed: list, seconds: float) -> dict:
    return {
        "quick": quick,
        "seeds": list(bench.seeds[: len(per_seed)]),
        "learning_rates": list(bench.learning_rates),
        "epochs": bench.unlearn.epochs,
        "entities": bench.data.n_entities,
        "retain_eval": bench.retain_eval,
        "per_seed": per_seed,
        "summary": summarise(per_seed),
        "utility_at_forgetting": utility_at_forgetting(per_seed),
        "fq_threshold": FQ_THRESHOLD,
        "seconds": seconds,
    }
