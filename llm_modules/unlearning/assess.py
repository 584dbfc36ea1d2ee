"""One assessment of an unlearned model, after "Rethinking Machine Unlearning for LLMs":
efficacy, generalisation, utility, robustness and efficiency in one report.

Every number reuses the suite's metric code (`evaluate.score_split`, `metrics.report`,
`metrics.privleak`); this module adds the probes the benchmark does not run:

- generalisation: the same scores on never-trained rewordings of the forget questions and
  on related questions whose answers the forget facts imply;
- robustness: the forget set is split into an *exposed* part and a *measured* part.
  In-context relearning puts a few exposed facts (question and answer) before each measured
  question; fine-tuning relearning trains a copy of the model for a few steps on the exposed
  part. Both report the measured part's answer probability before and after, next to the
  retain-only model's (what exposure alone teaches a model that never saw the facts) and
  the target's (what there was to recover);
- efficiency: wall time and peak memory of the unlearning run against retraining on the
  retain set (measured, given, or extrapolated from measured steps; the report says which).
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError, Pv4fadError
from llm_modules.unlearning.data import Fact, PromptFormat, encode_facts, encode_pairs
from llm_modules.unlearning.evaluate import answer_nlls, score_split, score_splits
from llm_modules.unlearning.metrics import OPTION_SPLITS, privleak, probability, report
from llm_modules.unlearning.scoring import mean_answer_nll

Model = tuple[PreTrainedModel, PreTrainedTokenizerBase]
# membership attacks: report key of the forget-vs-holdout AUC under each attack's score
ATTACKS = {"loss": "mia_loss_auc", "zlib": "mia_zlib_auc", "min_k": "mia_auc",
           "min_k_plus_plus": "mia_min_k_plus_plus_auc"}
MODEL_ORDER = ("target", "unlearned", "retain_model")
CUDA_MEMORY = "CUDA memory allocated by torch (peak)"
RSS_MEMORY = "process RSS above its starting level (peak, sampled)"


@dataclass(frozen=True)
class AssessConfig:
    """The robustness probes' settings."""

    icl_shots: int = 2  # exposed facts placed before each measured question
    exposed_fraction: float = 0.5  # of the forget set, for the shots and the relearning
    relearn_steps: int = 5
    relearn_lr: float = 1e-3
    relearn_batch: int = 8
    seed: int = 0

    def check(self) -> None:
        if self.icl_shots < 0 or self.relearn_steps < 0 or self.relearn_batch < 1:
            raise Pv4fadError("assess: --icl-shots and --relearn-steps must be >= 0")
        if not 0.0 < self.exposed_fraction < 1.0:
            raise Pv4fadError(f"assess: --exposed-fraction must be in (0, 1), got "
                              f"{self.exposed_fraction}")


def split_forget(forget: Sequence[Fact], fraction: float, seed: int):
    """(exposed, measured): a seeded shuffle of the forget set cut at `fraction`."""
    if len(forget) < 2:
        raise DataError("assess: the forget set needs at least 2 facts to split it into an "
                        "exposed and a measured part")
    order = list(range(len(forget)))
    random.Random(seed).shuffle(order)
    cut = min(len(forget) - 1, max(1, round(fraction * len(forget))))
    return [forget[i] for i in order[:cut]], [forget[i] for i in order[cut:]]


# ---------------------------------------------------------------- robustness: in context


def _max_positions(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings",
                                                           None)


def _context(tokenizer: PreTrainedTokenizerBase, shots: Sequence[Fact],
             fmt: PromptFormat | None) -> str:
    """The shots as text before a question: in the plain format each shot is written as the
    model was trained on it (`question answer<eos>`); otherwise as question / answer lines
    inside the prompt's question."""
    if fmt is None:
        return "".join(f"{f.question} {f.answer} {tokenizer.eos_token} " for f in shots)
    return "".join(f"{f.question}\n{f.answer}\n\n" for f in shots)


def in_context_questions(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, exposed: Sequence[Fact],
    measured: Sequence[Fact], shots: int, fmt: PromptFormat | None,
) -> tuple[list[str], float]:
    """Each measured question prefixed with `shots` exposed facts (fewer where the model's
    position limit would be passed); returns the questions and the mean shots used."""
    limit = _max_positions(model)
    questions, used = [], []
    for i, fact in enumerate(measured):
        for k in range(min(shots, len(exposed)), -1, -1):
            chosen = [exposed[(i + j) % len(exposed)] for j in range(k)]
            question = _context(tokenizer, chosen, fmt) + fact.question
            width = encode_pairs(tokenizer, [question], [fact.answer], fmt).input_ids.shape[1]
            if limit is None or width <= limit:
                break
        questions.append(question)
        used.append(k)
    return questions, sum(used) / len(used)


def _likelihood(nlls: Sequence[float]) -> tuple[float, float]:
    """(probability as the report gives it, mean answer NLL): the probability is the mean of
    exp(-NLL), which near-zero values flatten; the NLL shows changes among them."""
    return probability(nlls), sum(nlls) / len(nlls)


def in_context_relearning(model: Model, exposed: Sequence[Fact], measured: Sequence[Fact],
                          shots: int, fmt: PromptFormat | None) -> dict[str, float]:
    """Measured-set answer probability and NLL without and with exposed facts in the
    prompt."""
    net, tokenizer = model
    answers = [f.answer for f in measured]
    without, nll_without = _likelihood(answer_nlls(
        net, tokenizer, [f.question for f in measured], answers, fmt))
    questions, used = in_context_questions(net, tokenizer, exposed, measured, shots, fmt)
    with_shots, nll_with = _likelihood(answer_nlls(net, tokenizer, questions, answers, fmt))
    return {"probability_without": without, "probability_with": with_shots,
            "gain": with_shots - without, "nll_without": nll_without, "nll_with": nll_with,
            "shots_used": used}


# ---------------------------------------------------------------- robustness: fine-tuning


def relearn(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact],
    steps: int, lr: float, batch_size: int, fmt: PromptFormat | None, seed: int,
    after_step: Callable[[int, PreTrainedModel], None] | None = None,
) -> PreTrainedModel:
    """A fine-tuned copy: `steps` AdamW steps of answer NLL on `facts` (the model is kept);
    `after_step(step, copy)` runs after each step (and at step 0)."""
    worker = copy.deepcopy(model)
    device = next(worker.parameters()).device
    optimizer = torch.optim.AdamW(worker.parameters(), lr=lr, weight_decay=0.0)
    order = list(range(len(facts)))
    random.Random(seed).shuffle(order)
    if after_step is not None:
        after_step(0, worker)
    for step in range(steps):
        start = (step * batch_size) % len(order)
        chunk = [facts[order[(start + i) % len(order)]] for i in range(min(batch_size,
                                                                            len(order)))]
        worker.train()
        loss = mean_answer_nll(worker, encode_facts(tokenizer, chunk, fmt).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        worker.eval()
        if after_step is not None:
            after_step(step + 1, worker)
    return worker


def finetune_relearning(model: Model, exposed: Sequence[Fact], measured: Sequence[Fact],
                        config: AssessConfig, fmt: PromptFormat | None) -> dict[str, Any]:
    """Measured-set answer probability and NLL after each relearning step on the exposed
    part."""
    net, tokenizer = model
    questions, answers = [f.question for f in measured], [f.answer for f in measured]
    curve: list[tuple[float, float]] = []

    def record(_step: int, worker: PreTrainedModel) -> None:
        curve.append(_likelihood(answer_nlls(worker, tokenizer, questions, answers, fmt)))

    worker = relearn(net, tokenizer, exposed, config.relearn_steps, config.relearn_lr,
                     config.relearn_batch, fmt, config.seed, after_step=record)
    exposed_after = probability(answer_nlls(
        worker, tokenizer, [f.question for f in exposed], [f.answer for f in exposed], fmt))
    return {"probability_before": curve[0][0], "probability_after": curve[-1][0],
            "gain": curve[-1][0] - curve[0][0], "nll_before": curve[0][1],
            "nll_after": curve[-1][1], "curve": [p for p, _ in curve],
            "nll_curve": [n for _, n in curve], "exposed_probability_after": exposed_after}


# ---------------------------------------------------------------- efficiency


class _PeakRss:
    """Peak resident memory of this process while running, sampled every 10 ms."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, dict[str, Any]]:
    """Run `fn`; return its result and {seconds (wall), cpu_seconds (this process's CPU
    time, all threads: what a shared machine's load does not inflate), peak_mb,
    memory_kind}. CUDA: peak memory allocated by torch during the call; CPU: the process's
    peak RSS above its level at the start (sampled, so short spikes may be missed)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        torch.cuda.synchronize(device)
        return out, {"seconds": time.perf_counter() - started,
                     "cpu_seconds": time.process_time() - cpu,
                     "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                     "memory_kind": CUDA_MEMORY}
    with _PeakRss() as rss:
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return out, {"seconds": seconds, "cpu_seconds": cpu_seconds,
                 "peak_mb": (rss.peak - rss.start) / 2**20, "memory_kind": RSS_MEMORY}


def estimate_retraining(model: Model, retain: Sequence[Fact], epochs: int, batch_size: int,
                        fmt: PromptFormat | None, probe_steps: int = 3) -> dict[str, Any]:
    """Retraining cost extrapolated from `probe_steps` measured fine-tuning steps on retain
    batches of a copy of the model (after one warm-up step; the copy is not timed)."""
    net, tokenizer = model
    steps = epochs * -(-len(retain) // batch_size)
    stamps: list[tuple[float, float]] = []  # (wall, CPU) after each step from the warm-up

    def stamp(step: int, worker: PreTrainedModel) -> None:
        if step >= 1:  # step 1 is the warm-up
            device = next(worker.parameters()).device
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append((time.perf_counter(), time.process_time()))

    _, cost = measure(lambda: relearn(net, tokenizer, retain, probe_steps + 1, 1e-5,
                                      batch_size, fmt, 0, after_step=stamp),
                      next(net.parameters()).device)
    wall, cpu = (stamps[-1][i] - stamps[0][i] for i in (0, 1))
    return {"seconds": wall / probe_steps * steps, "cpu_seconds": cpu / probe_steps * steps,
            "peak_mb": cost["peak_mb"],
            "memory_kind": cost["memory_kind"], "steps": steps, "epochs": epochs,
            "kind": f"estimated: {probe_steps} measured fine-tuning steps on the retain set "
                    f"extrapolated to {epochs} epochs ({steps} steps)"}


def efficiency(unlearning: dict[str, Any], retraining: dict[str, Any] | None) -> dict:
    """The efficiency section: both costs and their ratios. Wall-time ratio always; CPU-time
    ratio when both were measured here (on a shared CPU it is the one to read: load
    stretches wall time, not CPU time); memory ratio only when both are torch's CUDA peaks
    (RSS deltas on a CPU depend on what the process held before, so they do not compare)."""
    out: dict[str, Any] = {"unlearning": unlearning, "retraining": retraining}
    if not retraining:
        return out
    if retraining.get("seconds"):
        out["time_ratio"] = unlearning["seconds"] / retraining["seconds"]
    if retraining.get("cpu_seconds") and "cpu_seconds" in unlearning:
        out["cpu_time_ratio"] = unlearning["cpu_seconds"] / retraining["cpu_seconds"]
    if (retraining.get("peak_mb") and unlearning.get("memory_kind") == CUDA_MEMORY
            and retraining.get("memory_kind") == CUDA_MEMORY):
        out["memory_ratio"] = unlearning["peak_mb"] / retraining["peak_mb"]
    return out


# ---------------------------------------------------------------- the assessment


def _subset(metrics: dict[str, float], prefixes: Sequence[str]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(tuple(prefixes))}


def _generalisation(scores) -> dict[str, float]:
    return {"probability": scores.probability(), "rouge": sum(scores.rouge) / len(scores.rouge),
            "extraction_strength": sum(scores.extraction) / len(scores.extraction)}


def assess(
    models: dict[str, Model],
    splits: dict[str, list[Fact]],
    config: AssessConfig = AssessConfig(),
    *,
    generalisation: dict[str, list[Fact]] | None = None,
    fmt: PromptFormat | None = None,
    cost: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The report over `models` ("unlearned" required; "target", the model before
    unlearning, and "retain_model", trained without the forget set, optional) on `splits`
    (forget, retain, holdout, and answer-based utility splits). `generalisation` maps a
    probe's name to its facts; `cost` is the `efficiency(...)` section."""
    config.check()
    if "unlearned" not in models:
        raise Pv4fadError("assess: no unlearned model")
    missing = [name for name in ("forget", "retain", "holdout") if name not in splits]
    if missing:
        raise DataError(f"assess: no {', '.join(missing)} split (forget, retain and holdout "
                        "are needed)")
    names = [name for name in MODEL_ORDER if name in models]
    scores = {}
    for name in names:
        log(f"scoring the {name} model on {', '.join(splits)}")
        scores[name] = score_splits(*models[name], splits, fmt)
    reference = scores.get("retain_model")
    metrics = {name: report(scores[name], reference) for name in names}
    result: dict[str, Any] = {
        "models": names,
        "sizes": {name: len(facts) for name, facts in splits.items()},
        "settings": asdict(config),
        "metrics": metrics,
        "efficacy": {name: _efficacy(metrics[name], metrics.get("retain_model"))
                     for name in names},
        "utility": {name: _subset(metrics[name], ("model_utility", "retain_",
                                                  *(f"{s}_" for s in OPTION_SPLITS)))
                    for name in names},
    }
    result["generalisation"] = {}
    for probe, facts in (generalisation or {}).items():
        log(f"generalisation probe {probe!r} ({len(facts)} facts)")
        result["sizes"][probe] = len(facts)
        result["generalisation"][probe] = {
            name: _generalisation(score_split(*models[name], facts, fmt=fmt)) for name in names
        }
    result["robustness"] = _robustness(models, names, splits["forget"], config, fmt, log)
    if cost is not None:
        result["efficiency"] = cost
    return result


def _efficacy(metrics: dict[str, float], retain_metrics: dict[str, float] | None) -> dict:
    out: dict[str, Any] = _subset(metrics, ("forget_",))
    if "forget_quality" in metrics:
        out["forget_quality"] = metrics["forget_quality"]
    mia = {}
    for attack, key in ATTACKS.items():
        if key not in metrics:
            continue
        mia[attack] = {"auc": metrics[key]}
        if retain_metrics is not None and key in retain_metrics:
            mia[attack]["privleak"] = privleak(metrics[key], retain_metrics[key])
    out["mia"] = mia
    return out


def _robustness(models: dict[str, Model], names: list[str], forget: list[Fact],
                config: AssessConfig, fmt: PromptFormat | None,
                log: Callable[[str], None]) -> dict[str, Any]:
    exposed, measured = split_forget(forget, config.exposed_fraction, config.seed)
    out: dict[str, Any] = {"exposed": len(exposed), "measured": len(measured),
                           "in_context": {}, "relearning": {}}
    for name in names:
        log(f"in-context relearning ({config.icl_shots} shots): {name}")
        out["in_context"][name] = in_context_relearning(models[name], exposed, measured,
                                                        config.icl_shots, fmt)
    # the target already knows the facts: relearning it says nothing
    for name in (n for n in names if n != "target"):
        log(f"relearning by {config.relearn_steps} fine-tuning steps: {name}")
        out["relearning"][name] = finetune_relearning(models[name], exposed, measured,
                                                      config, fmt)
    if "target" in names:
        known = out["in_context"]["target"]["probability_without"]
        for probe in ("in_context", "relearning"):
            row = out[probe]["unlearned"]
            before = row.get("probability_without", row.get("probability_before"))
            after = row.get("probability_with", row.get("probability_after"))
            # the share of what unlearning removed that came back
            removed = known - before
            row["recovered_fraction"] = (after - before) / removed if removed > 1e-9 else None
    return out


# ---------------------------------------------------------------- the written report


def write_report(result: dict[str, Any], out_dir) -> dict[str, str]:
    """assessment.json, assessment.md and its PNG figures under `out_dir`; returns paths."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(result, out)
    (out / "assessment.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "assessment.md").write_text(render_markdown(result, figures))
    return {"json": str(out / "assessment.json"), "markdown": str(out / "assessment.md"),
            **{k: str(out / v) for k, v in figures.items()}}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(rows: list[tuple[str, list[Any]]], columns: list[str]) -> list[str]:
    lines = [f"| | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    lines += [f"| {label} | {' | '.join(_fmt(v) for v in values)} |" for label, values in rows]
    return lines


def render_markdown(result: dict[str, Any], figures: dict[str, str]) -> str:
    names = result["models"]
    eff = result["efficacy"]
    lines = ["# Unlearning assessment", "",
             "Models: " + ", ".join(names) + ". Split sizes (facts): "
             + ", ".join(f"{k} {v}" for k, v in result["sizes"].items()) + ".", "",
             "## Efficacy", ""]
    keys = ["forget_quality", "forget_probability", "forget_rouge", "forget_truth_ratio",
            "forget_extraction_strength"]
    rows = [(k, [eff[n].get(k) for n in names]) for k in keys]
    for attack in ATTACKS:
        rows.append((f"MIA {attack} AUC", [eff[n]["mia"].get(attack, {}).get("auc")
                                           for n in names]))
        rows.append((f"privleak ({attack})", [eff[n]["mia"].get(attack, {}).get("privleak")
                                              for n in names]))
    lines += _table(rows, names)
    lines += ["", "MIA: forget set (members) against holdout (non-members); privleak as MUSE "
              "and open-unlearning report it, 0 = like the retain-only model, negative = the "
              "forget set is still recognisable.", ""]
    if "efficacy" in figures:
        lines += [f"![efficacy]({figures['efficacy']})", ""]
    if "mia" in figures:
        lines += [f"![membership inference]({figures['mia']})", ""]
    if result["generalisation"]:
        lines += ["## Generalisation", "",
                  "The forget set's knowledge asked in other words: scores of the answer on "
                  "never-trained probes (compare with the forget set's above).", ""]
        rows = []
        for probe, by_model in result["generalisation"].items():
            for metric in ("probability", "rouge", "extraction_strength"):
                rows.append((f"{probe} {metric}", [by_model[n][metric] for n in names]))
        lines += _table(rows, names) + [""]
    lines += ["## Utility", ""]
    keys = sorted({k for n in names for k in result["utility"][n]})
    lines += _table([(k, [result["utility"][n].get(k) for n in names]) for k in keys], names)
    rob = result["robustness"]
    lines += ["", "## Robustness", "",
              f"The forget set is split into {rob['exposed']} exposed and {rob['measured']} "
              "measured facts. In-context: exposed facts (question and answer) placed before "
              "each measured question. Relearning: "
              f"{result['settings']['relearn_steps']} fine-tuning steps (lr "
              f"{result['settings']['relearn_lr']:g}) on the exposed facts. Values: answer "
              "probability on the measured facts; recovered = the share of what unlearning "
              "removed (target minus unlearned) that came back; NLL: mean answer NLL per "
              "token (the probability, a mean of exp(-NLL), hides changes among near-zero "
              "values).", ""]
    rows = [
        ("in-context: without", [rob["in_context"][n]["probability_without"] for n in names]),
        ("in-context: with shots", [rob["in_context"][n]["probability_with"] for n in names]),
        ("in-context: NLL without", [rob["in_context"][n]["nll_without"] for n in names]),
        ("in-context: NLL with shots", [rob["in_context"][n]["nll_with"] for n in names]),
        ("in-context: shots used", [rob["in_context"][n]["shots_used"] for n in names]),
        ("in-context: recovered", [rob["in_context"][n].get("recovered_fraction")
                                   for n in names]),
        ("relearning: before", [rob["relearning"].get(n, {}).get("probability_before")
                                for n in names]),
        ("relearning: after", [rob["relearning"].get(n, {}).get("probability_after")
                               for n in names]),
        ("relearning: NLL before", [rob["relearning"].get(n, {}).get("nll_before")
                                    for n in names]),
        ("relearning: NLL after", [rob["relearning"].get(n, {}).get("nll_after")
                                   for n in names]),
        ("relearning: recovered", [rob["relearning"].get(n, {}).get("recovered_fraction")
                                   for n in names]),
    ]
    lines += _table(rows, names) + [""]
    if "robustness" in figures:
        lines += [f"![relearning]({figures['robustness']})", ""]
    cost = result.get("efficiency")
    lines += ["## Efficiency", ""]
    if cost is None:
        lines += ["Not measured (the model was unlearned elsewhere).", ""]
    else:
        un, re_ = cost["unlearning"], cost.get("retraining")

        def spent(row: dict[str, Any]) -> str:
            cpu = f" ({row['cpu_seconds']:.1f} s CPU)" if row.get("cpu_seconds") else ""
            memory = (f", peak {row['peak_mb']:.0f} MB ({row['memory_kind']})"
                      if row.get("peak_mb") is not None else "")
            return f"{row['seconds']:.1f} s wall{cpu}{memory}"

        lines += [f"Unlearning: {spent(un)}."]
        if re_:
            lines += [f"Retraining on the retain set, {re_['kind']}: {spent(re_)}."]
        ratios = [f"{label} {cost[key]:.3f}" for key, label in (
            ("time_ratio", "wall time"), ("cpu_time_ratio", "CPU time"),
            ("memory_ratio", "peak memory")) if key in cost]
        if ratios:
            lines += ["Unlearning relative to retraining: " + ", ".join(ratios) + "."]
        lines += [""]
    return "\n".join(lines)


def _figures(result: dict[str, Any], out) -> dict[str, str]:
    """efficacy.png, mia.png, robustness.png (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["models"]
    figures = {}

    def bars(ax, labels: list[str], values: dict[str, list[float | None]]) -> None:
        width = 0.8 / len(values)
        for i, (name, row) in enumerate(values.items()):
            xs = [j + i * width for j in range(len(labels))]
            ax.bar(xs, [v if v is not None else 0.0 for v in row], width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels,
                      rotation=20, ha="right")
        ax.legend()

    panels = [("forget prob.", lambda n: result["efficacy"][n].get("forget_probability")),
              ("forget ROUGE", lambda n: result["efficacy"][n].get("forget_rouge")),
              ("forget extraction", lambda n: result["efficacy"][n].get(
                  "forget_extraction_strength"))]
    for probe in result["generalisation"]:
        panels.append((f"{probe} prob.",
                       lambda n, p=probe: result["generalisation"][p][n]["probability"]))
    panels += [("retain prob.", lambda n: result["utility"][n].get("retain_probability")),
               ("model utility", lambda n: result["utility"][n].get("model_utility"))]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars(ax, [p[0] for p in panels], {n: [fn(n) for _, fn in panels] for n in names})
    ax.set_ylim(0, 1.05)
    ax.set_title("Efficacy, generalisation and utility")
    fig.tight_layout()
    fig.savefig(out / "efficacy.png", dpi=100)
    plt.close(fig)
    figures["efficacy"] = "efficacy.png"

    attacks = [a for a in ATTACKS if all(a in result["efficacy"][n]["mia"] for n in names)]
    if attacks:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        bars(ax, attacks, {n: [result["efficacy"][n]["mia"][a]["auc"] for a in attacks]
                           for n in names})
        ax.axhline(0.5, color="grey", linestyle=":")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("AUC forget vs holdout")
        ax.set_title("Membership inference by attack")
        fig.tight_layout()
        fig.savefig(out / "mia.png", dpi=100)
        plt.close(fig)
        figures["mia"] = "mia.png"

    rob = result["robustness"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, row in rob["relearning"].items():
        left.plot(range(len(row["curve"])), row["curve"], marker="o", label=name)
        right.plot(range(len(row["nll_curve"])), row["nll_curve"], marker="o", label=name)
    if "target" in rob["in_context"]:
        left.axhline(rob["in_context"]["target"]["probability_without"], color="grey",
                     linestyle="--", label="target")
        right.axhline(rob["in_context"]["target"]["nll_without"], color="grey",
                      linestyle="--", label="target")
    left.set_ylabel("measured-facts probability")
    right.set_ylabel("measured-facts answer NLL")
    for ax in (left, right):
        ax.set_xlabel("relearning steps on the exposed facts")
        ax.legend()
    fig.suptitle("Relearning by fine-tuning")
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=100)
    plt.close(fig)
    figures["robustness"] = "robustness.png"
    return figures
