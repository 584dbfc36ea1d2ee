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
from llm_modules.unlearning.spunge import split_by_attribute, spunge, subset_config
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
    budget: str = "epochs"  # SPUNGE subset length (see spunge.BUDGETS)
    full_only: bool = False  # left out of --quick to keep it short


VARIANTS = (
    Variant("gradascent", "gradascent"),
    Variant("graddiff", "graddiff"),
    Variant("graddiff+wagle0.95", "graddiff", "wagle", 0.95, full_only=True),
    Variant("graddiff+wagle0.8", "graddiff", "wagle", 0.8),
    Variant("npo", "npo"),
    Variant("npo+wagle0.95", "npo", "wagle", 0.95, full_only=True),
    Variant("npo+wagle0.8", "npo", "wagle", 0.8),
    Variant("npo+random0.8", "npo", "random", 0.8),
    Variant("npo+magnitude0.8", "npo", "magnitude", 0.8, full_only=True),
    Variant("npo+forgetgrad0.8", "npo", "forget-gradient", 0.8, full_only=True),
    Variant("npo+wagle0.5", "npo", "wagle", 0.5, full_only=True),
    Variant("npo+random0.5", "npo", "random", 0.5, full_only=True),
    Variant("spunge-npo-ties", "npo", merge="ties"),
    Variant("spunge-npo-ta", "npo", merge="task-arithmetic"),
    Variant("spunge-npo-ties-steps", "npo", merge="ties", budget="steps"),
    Variant("spunge-npo-ta-steps", "npo", merge="task-arithmetic", budget="steps"),
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
    """Quick: 44 entities (4 forget, 4 holdout, 4 validation), 3 seeds; full: 110 entities
    (10 / 10 / 10: TOFU's 10 % forget), 5 seeds."""
    if seeds is not None and seeds < 1:
        raise Pv4fadError(f"--seeds must be at least 1, got {seeds}")
    if quick:
        data = BenchmarkConfig(n_entities=44, n_validation=4)
        quick_variants = tuple(v for v in VARIANTS if not v.full_only)
        return BenchSettings(
            tuple(range(seeds or 3)), (2e-4, 4e-4, 8e-4), data, UnlearnConfig(epochs=10),
            quick_variants,
        )
    data = BenchmarkConfig(n_entities=110, n_forget=10, n_holdout=10, n_validation=10)
    return BenchSettings(
        tuple(range(seeds or 5)), (2e-4, 4e-4, 8e-4, 1.6e-3), data, UnlearnConfig(epochs=10),
        VARIANTS, retain_eval=80,
    )


def run_variant(
    variant: Variant,
    target: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: list[Fact],
    retain: list[Fact],
    config: UnlearnConfig,
) -> PreTrainedModel:
    """Unlearn `forget` from a copy of `target` as `variant` says."""
    model = copy.deepcopy(target)
    config = replace(config, method=variant.method)

    def mask_for(worker: PreTrainedModel, subset: list[Fact]):
        if variant.mask is None:
            return None
        return build_mask(
            variant.mask, worker, tokenizer, subset, retain, variant.ratio, seed=config.seed
        )

    if variant.merge is not None:
        return spunge(model, tokenizer, forget, retain, config, "field", variant.merge,
                      mask_for=mask_for if variant.mask else None, budget=variant.budget)
    return unlearn(model, tokenizer, forget, retain, config, mask=mask_for(model, forget))


def optimiser_steps(variant: Variant, forget: list[Fact], config: UnlearnConfig) -> dict:
    """Steps per worker and in total, and passes over each forget fact, of one run: what
    separates SPUNGE's budgets from the dense run's."""
    def passes(steps: int, n: int) -> float:
        return steps / -(-n // config.batch_size)

    if variant.merge is None:
        steps = config.steps_for(len(forget))
        return {"workers": 1, "steps_per_worker": [steps], "total_steps": steps,
                "passes_per_fact": [passes(steps, len(forget))]}
    subsets = list(split_by_attribute(forget, "field").values())
    sub_config = subset_config(config, len(forget), variant.budget)
    per_worker = [sub_config.steps_for(len(s)) for s in subsets]
    return {"workers": len(subsets), "steps_per_worker": per_worker,
            "total_steps": sum(per_worker),
            "passes_per_fact": [passes(n, len(s)) for n, s in zip(per_worker, subsets,
                                                                  strict=True)]}


def select_lr(curve: dict[str, dict[str, float]], threshold: float = FQ_THRESHOLD) -> str:
    """The learning rate chosen on the validation split: the best model utility among those
    whose forget quality reaches `threshold`, else the best forget quality (ties: the
    smaller learning rate)."""
    forgotten = [lr for lr, r in curve.items() if r["forget_quality"] >= threshold]
    if forgotten:
        return max(forgotten, key=lambda lr: (curve[lr]["model_utility"], -float(lr)))
    return max(curve, key=lambda lr: (curve[lr]["forget_quality"], -float(lr)))


def run_seed(
    seed: int, bench: BenchSettings, root: Path | None, log: Callable[[str], None]
) -> dict:
    """One seed: {"validation": {variant: {lr: report}}, "test": {variant: {"lr", "steps",
    "metrics"}}}. Every learning rate is tried on the validation forget set (other entities
    than the reported forget set); only the selected one is run on the reported split."""
    paths = build_benchmark(replace(bench.data, seed=seed), root, log=log)
    splits = paths.load_splits(extra=True)
    if "validation" not in splits:
        raise Pv4fadError("the benchmark data has no validation split (n_validation is 0)")
    retain_eval = splits["retain"][: bench.retain_eval]
    # Unlearning uses the whole retain split; evaluation may use its first facts only.
    test_eval = {"forget": splits["forget"], "retain": retain_eval,
                 "holdout": splits["holdout"], "world": splits["world"]}
    val_eval = {"forget": splits["validation"], "retain": retain_eval, "world": splits["world"]}
    retain_model, tokenizer = load_causal_lm(paths.retain_model)
    target, _ = load_causal_lm(paths.target)
    reference: Scores = score_splits(retain_model, tokenizer, test_eval)
    val_reference: Scores = score_splits(retain_model, tokenizer, val_eval)
    test = {
        "target": {"lr": "-", "metrics": report(score_splits(target, tokenizer, test_eval),
                                                reference)},
        "retain-only": {"lr": "-", "metrics": report(reference, reference)},
    }
    validation: dict[str, dict[str, dict[str, float]]] = {}
    for variant in bench.variants:
        curve = {}
        for lr in bench.learning_rates:
            config = replace(bench.unlearn, lr=lr, seed=seed)
            model = run_variant(variant, target, tokenizer, splits["validation"],
                                splits["retain"], config)
            curve[f"{lr:g}"] = report(score_splits(model, tokenizer, val_eval), val_reference)
        validation[variant.name] = curve
        chosen = select_lr(curve)
        config = replace(bench.unlearn, lr=float(chosen), seed=seed)
        model = run_variant(variant, target, tokenizer, splits["forget"], splits["retain"],
                            config)
        metrics = report(score_splits(model, tokenizer, test_eval), reference)
        test[variant.name] = {"lr": chosen, "metrics": metrics,
                              "steps": optimiser_steps(variant, splits["forget"], config)}
        log(f"seed {seed} {variant.name}: validation " + ", ".join(
            f"lr {lr} FQ {r['forget_quality']:.3f} MU {r['model_utility']:.3f}"
            for lr, r in curve.items())
            + f"; chosen lr {chosen}: test FQ {metrics['forget_quality']:.3f} "
              f"MU {metrics['model_utility']:.3f}")
    return {"validation": validation, "test": test}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(per_seed: list[dict]) -> dict:
    """Per variant, over seeds: the learning rates chosen on validation and the spread
    (median, min, max) of each headline metric on the reported split at those rates."""
    return {
        variant: {
            "lr": [rows["test"][variant]["lr"] for rows in per_seed],
            **{m: _spread([rows["test"][variant]["metrics"][m] for rows in per_seed])
               for m in HEADLINE},
        }
        for variant in per_seed[0]["test"]
    }


def summarise_validation(per_seed: list[dict]) -> dict:
    """The validation curves: per variant and learning rate, the spread of forget quality
    and model utility over seeds (the data the learning rate was chosen on)."""
    return {
        variant: {
            lr: {m: _spread([rows["validation"][variant][lr][m] for rows in per_seed])
                 for m in ("forget_quality", "model_utility")}
            for lr in by_lr
        }
        for variant, by_lr in per_seed[0]["validation"].items()
    }


def utility_at_forgetting(
    per_seed: list[dict], threshold: float = FQ_THRESHOLD
) -> dict[str, dict[str, float]]:
    """Per variant, on the reported split at the learning rate chosen on validation: the
    model utility when forget quality reaches `threshold`, else 0; spread over seeds.

    One number per variant: how much utility survives once the forget set's truth ratios
    can no longer be told from the retain-only model's at that significance level.
    """
    out = {}
    for variant in per_seed[0]["test"]:
        if variant in ("target", "retain-only"):
            continue
        values = []
        for rows in per_seed:
            r = rows["test"][variant]["metrics"]
            values.append(r["model_utility"] if r["forget_quality"] >= threshold else 0.0)
        out[variant] = _spread(values)
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
    per_seed: list[dict] = []
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
        "lr_selection": "per variant and seed, on the validation forget set (other entities "
                        "than the reported forget set): best model utility with forget "
                        f"quality >= {FQ_THRESHOLD}, else best forget quality",
        "epochs": bench.unlearn.epochs,
        "batch_size": bench.unlearn.batch_size,
        "entities": bench.data.n_entities,
        "forget_entities": bench.data.n_forget,
        "holdout_entities": bench.data.n_holdout,
        "validation_entities": bench.data.n_validation,
        "retain_eval": bench.retain_eval,
        "per_seed": per_seed,
        "summary": summarise(per_seed),
        "validation_summary": summarise_validation(per_seed),
        "utility_at_forgetting": utility_at_forgetting(per_seed),
        "fq_threshold": FQ_THRESHOLD,
        "seconds": seconds,
    }
