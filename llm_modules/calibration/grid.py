"""The LinC benchmark's main grid: every calibrator on every prompt template, number of
shots, validation size and seed, with LinC's hyperparameters chosen on separate
development seeds.

A seed fixes the task's data (for the built-in task: its own generated pool, validation and
test sets), the demonstrations drawn for each number of shots, the validation subset (the
5 / 10 / 50 examples are nested prefixes of one draw) and LinC's shuffling. Every method
sees the same label probabilities. Numbers are medians over seeds (min-max) of the mean
over templates, unless a table says per template.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from federation.errors import Pv4fadError
from llm_modules.calibration.builtin import TaskModelConfig, build_task_model
from llm_modules.calibration.calibrators import Calibrator, make_calibrator
from llm_modules.calibration.data import Example
from llm_modules.calibration.metrics import report
from llm_modules.calibration.prompts import PromptSpec, sample_demonstrations
from llm_modules.calibration.scoring import LabelScorer
from llm_modules.calibration.task import PROMPTS, TaskSplits, task_splits

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    """What the benchmark runs. LinC runs `linc_epochs` epochs (15, as most of the official
    scripts); its learning rate is `linc_lr` if given, else tuned per validation size and
    number of shots on the development seeds (the official scripts set it per setting)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    shots: tuple[int, ...] = (0, 1, 4, 8)
    sizes: tuple[int, ...] = (5, 10, 50)
    test_size: int = 300
    sensitivity_shots: int = 4
    permutations: int = 6
    dev_seeds: tuple[int, ...] = (100, 101, 102)
    lr_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    linc_epochs: int = 15
    linc_lr: float | None = None
    federated_owners: int = 5
    federated_sizes: tuple[int, ...] = (10, 50)
    federated_shots: tuple[int, ...] = (0, 4)
    model: TaskModelConfig = field(default_factory=TaskModelConfig)


def quick_settings() -> BenchSettings:
    """Two seeds, 0 and 4 shots, sizes 5 and 10, fixed LinC settings: a few minutes."""
    return BenchSettings(seeds=(0, 1), shots=(0, 4), sizes=(5, 10), test_size=150,
                         permutations=3, linc_lr=0.1,
                         federated_sizes=(10,))


@dataclass(frozen=True)
class BenchTask:
    """A model, its prompt templates and the data of each seed."""

    name: str
    model_path: Path
    prompts: tuple[PromptSpec, ...]
    splits: Callable[[int], TaskSplits]
    tunable: bool  # whether development seeds have data of their own (built-in only)


def builtin_task(settings: BenchSettings, root: Path | None, log: Log) -> BenchTask:
    path = build_task_model(settings.model, root, log)
    return BenchTask("built-in headlines", path, PROMPTS,
                     lambda seed: task_splits(seed, test=settings.test_size), tunable=True)


def file_task(model: str | Path, prompts: Sequence[PromptSpec], pool: Sequence[Example],
              validation: Sequence[Example], test: Sequence[Example]) -> BenchTask:
    """A user's model and data; seeds vary demonstrations and validation subsets only."""
    classes = {spec.classes for spec in prompts}
    if len(classes) != 1:
        raise Pv4fadError("every prompt file must declare the same classes in the same order")
    splits = TaskSplits(list(pool), list(validation), list(test))
    return BenchTask(Path(model).name, Path(model), tuple(prompts), lambda _seed: splits,
                     tunable=False)


@dataclass(frozen=True)
class ScoredPrompt:
    """Label probabilities of one prompt (template + demonstrations) on one seed's data."""

    test: np.ndarray
    test_labels: np.ndarray
    validation: np.ndarray
    validation_labels: np.ndarray
    p_cf: np.ndarray


def demonstrations_for(pool: Sequence[Example], shots: int, seed: int) -> list[Example]:
    return sample_demonstrations(pool, shots, seed * 100 + shots)


def validation_subset(splits: TaskSplits, size: int, seed: int) -> list[Example]:
    """One seeded draw; smaller validation sizes are its prefixes."""
    if size > len(splits.validation):
        raise Pv4fadError(f"validation size {size} exceeds the {len(splits.validation)} "
                          f"validation examples")
    return random.Random(seed * 7 + 11).sample(splits.validation, size)


def score_prompt(scorer: LabelScorer, spec: PromptSpec, demos: Sequence[Example],
                 validation: Sequence[Example], test: Sequence[Example]) -> ScoredPrompt:
    def labels(examples: Sequence[Example]) -> np.ndarray:
        return np.array([spec.classes.index(e.label) for e in examples])

    return ScoredPrompt(
        scorer.probabilities(spec, demos, [e.text for e in test]), labels(test),
        scorer.probabilities(spec, demos, [e.text for e in validation]), labels(validation),
        scorer.content_free(spec, demos),
    )


Method = tuple[str, int, Callable[[], Calibrator]]  # (label, validation size, factory)
Rates = dict[tuple[int, int], float]  # LinC's lr per (validation size, shots)


def methods(settings: BenchSettings, rates: Rates, shots: int, seed: int) -> list[Method]:
    """Every calibrator of the benchmark, fitted methods once per validation size."""
    out: list[Method] = [("none", 0, lambda: make_calibrator("none")),
                         ("contextual", 0, lambda: make_calibrator("contextual"))]
    for n in settings.sizes:
        lr = rates[(n, shots)]
        out.append((f"linc@{n}", n, lambda lr=lr: make_calibrator(
            "linc", lr=lr, epochs=settings.linc_epochs, seed=seed)))
        out.append((f"temperature@{n}", n, lambda: make_calibrator("temperature")))
        out.append((f"platt@{n}", n, lambda: make_calibrator("platt")))
    return out


def calibrated(scored: ScoredPrompt, method: Method) -> np.ndarray:
    """Test-set probabilities after fitting `method` on its validation prefix."""
    _, n, factory = method
    fitted = factory().fit(scored.validation[:n], scored.validation_labels[:n],
                           p_cf=scored.p_cf)
    return fitted.transform(scored.test)


def evaluate(scored: ScoredPrompt, chosen: Sequence[Method]) -> dict[str, dict[str, float]]:
    return {m[0]: report(calibrated(scored, m), scored.test_labels) for m in chosen}


def over_seeds(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one number per seed."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def tune_linc(task: BenchTask, scorer: LabelScorer, settings: BenchSettings, log: Log
              ) -> tuple[Rates, dict]:
    """Per validation size and number of shots, the learning rate of the grid with the best
    mean accuracy over the development seeds and templates (never the evaluation seeds'
    data); also the mean accuracy of every grid point."""
    accuracy: dict[tuple[int, int, float], list[float]] = {}
    for seed in settings.dev_seeds:
        splits = task.splits(seed)
        validation = validation_subset(splits, max(settings.sizes), seed)
        for spec in task.prompts:
            for shots in settings.shots:
                demos = demonstrations_for(splits.pool, shots, seed)
                scored = score_prompt(scorer, spec, demos, validation, splits.test)
                for n, lr in itertools.product(settings.sizes, settings.lr_grid):
                    fitted = make_calibrator("linc", lr=lr, epochs=settings.linc_epochs,
                                             seed=seed).fit(
                        scored.validation[:n], scored.validation_labels[:n], p_cf=scored.p_cf)
                    hits = fitted.transform(scored.test).argmax(1) == scored.test_labels
                    accuracy.setdefault((n, shots, lr), []).append(float(hits.mean()))
        log(f"tuning: development seed {seed} done")
    rates = {}
    for n, shots in itertools.product(settings.sizes, settings.shots):
        # Ties go to the smaller learning rate (the smaller step from contextual calibration).
        rates[(n, shots)] = max(settings.lr_grid, key=lambda lr, n=n, shots=shots: (
            statistics.fmean(accuracy[(n, shots, lr)]), -lr))
    log("tuning: LinC's lr per (examples, shots): " + ", ".join(
        f"({n}, {k}) {lr:g}" for (n, k), lr in rates.items()))
    table = {f"{n}/{k}/{lr:g}": statistics.fmean(v) for (n, k, lr), v in accuracy.items()}
    return rates, table


def rates_record(rates: Rates) -> dict[str, float]:
    """The learning rates as JSON: "size/shots" -> lr."""
    return {f"{n}/{k}": lr for (n, k), lr in rates.items()}


def run_grid(task: BenchTask, scorer: LabelScorer, settings: BenchSettings, rates: Rates,
             log: Log) -> dict:
    """rows[seed][template][shots][method] = metrics, for every condition."""
    rows: dict = {}
    for seed in settings.seeds:
        splits = task.splits(seed)
        validation = validation_subset(splits, max(settings.sizes), seed)
        for spec in task.prompts:
            for shots in settings.shots:
                demos = demonstrations_for(splits.pool, shots, seed)
                scored = score_prompt(scorer, spec, demos, validation, splits.test)
                rows.setdefault(str(seed), {}).setdefault(spec.name, {})[str(shots)] = \
                    evaluate(scored, methods(settings, rates, shots, seed))
        smallest, done = f"linc@{min(settings.sizes)}", rows[str(seed)]
        log(f"seed {seed}, accuracy with no calibration / {smallest}: " + ", ".join(
            f"{k} shots {_template_mean(done, str(k), 'none'):.3f} / "
            f"{_template_mean(done, str(k), smallest):.3f}" for k in settings.shots))
    return rows


def _template_mean(by_template: dict, shots: str, method: str, metric: str = "accuracy"
                   ) -> float:
    return statistics.fmean(t[shots][method][metric] for t in by_template.values())


def summarise(rows: dict) -> dict:
    """Per shots and method: median (min-max) over seeds of the template-mean of each
    metric, each template's median accuracy, and the spread of accuracy across templates."""
    seeds = list(rows)
    first = rows[seeds[0]]
    templates = list(first)
    summary: dict = {}
    for shots, by_method in first[templates[0]].items():
        for method in by_method:
            entry = {metric: over_seeds([_template_mean(rows[s], shots, method, metric)
                                     for s in seeds])
                     for metric in ("accuracy", "macro_f1", "ece", "mean_entropy_bits")}
            entry["per_template_accuracy"] = {
                t: statistics.median(rows[s][t][shots][method]["accuracy"] for s in seeds)
                for t in templates}
            ranges = [max(a) - min(a) for a in (
                [rows[s][t][shots][method]["accuracy"] for t in templates] for s in seeds)]
            entry["template_range"] = over_seeds(ranges)
            summary.setdefault(shots, {})[method] = entry
    return summary
