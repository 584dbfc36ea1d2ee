"""The poisoning sweep: poison rate x trigger design x virtual tokens x task (x seed), with a
clean prefix per (task, virtual tokens, seed) as the utility baseline, and the defenses on
every poisoned model. Each finished cell is saved at once, so a killed sweep resumes."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from llm_modules.poisoning.audit import default_candidates
from llm_modules.poisoning.defenses import OnionFilter, consistency_scan, detection
from llm_modules.poisoning.finetune import FinetuneConfig, finetune
from llm_modules.poisoning.lm import builtin_base, generate, load_lm
from llm_modules.poisoning.metrics import target_match, target_phrases
from llm_modules.poisoning.poison import DEFAULT_TARGET, parse_trigger, poison_dataset, triggered
from llm_modules.poisoning.run import evaluate
from llm_modules.poisoning.tasks import TaskConfig, generate_task

AUDIT_INPUTS = 24  # validation inputs the adapter scan generates on, per candidate
COLLAPSE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Sweep:
    tasks: tuple[str, ...] = ("summarization", "completion")
    triggers: tuple[str, ...] = ("rare", "sentence")
    virtual_tokens: tuple[int, ...] = (10, 60)
    rates: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
    seeds: tuple[int, ...] = (0,)
    # LoRA / full fine-tuning as comparisons, each at these rates of the first trigger only
    compare_methods: tuple[str, ...] = ("lora", "full")
    compare_rates: tuple[float, ...] = (0.02,)
    lrs: tuple[tuple[str, float], ...] = (("prefix", 3e-2), ("lora", 5e-3), ("full", 1e-3))
    finetune: FinetuneConfig = FinetuneConfig()
    task_sizes: TaskConfig = TaskConfig()


QUICK = Sweep()
FULL = Sweep(triggers=("rare", "rare3", "sentence"), virtual_tokens=(10, 30, 60),
             seeds=(0, 1, 2), compare_rates=(0.005, 0.01, 0.02, 0.05),
             finetune=FinetuneConfig(epochs=30))
# The quick sweep's most telling prefix cells (2 % poison, 60 tokens) over three seeds.
SEEDS = replace(QUICK, seeds=(0, 1, 2), rates=(0.02,), virtual_tokens=(60,), compare_methods=())


def cells(sweep: Sweep) -> list[dict]:
    """Every run of the sweep, with a clean baseline once per (task, tokens, method, seed);
    LoRA and full fine-tuning have no virtual tokens (0). Ordered so that a partial sweep
    already covers both tasks: the most virtual tokens first, then the comparisons."""
    out = []
    for seed in sweep.seeds:
        for i, vt in enumerate(sorted(sweep.virtual_tokens, reverse=True)):
            for task in sweep.tasks:
                out.append(dict(task=task, trigger="rare", vt=vt, rate=0.0, seed=seed,
                                method="prefix"))
                out += [dict(task=task, trigger=t, vt=vt, rate=r, seed=seed, method="prefix")
                        for t in sweep.triggers for r in sweep.rates]
            if i == 0:
                out += [dict(task=task, trigger=sweep.triggers[0], vt=0, rate=r, seed=seed,
                             method=method) for task in sweep.tasks
                        for method in sweep.compare_methods for r in (0.0, *sweep.compare_rates)]
    return out


def key(cell: dict) -> str:
    return "|".join(f"{k}={cell[k]}" for k in ("task", "method", "vt", "trigger", "rate", "seed"))


def _onion(cell: dict, base: Path, data, trigger, memo: dict) -> dict:
    """ONION with the base model as reference, fitted once per (task, seed), and the
    triggered test inputs it cleans, once per trigger (shared by the cells)."""
    fit_key = (cell["task"], cell["seed"])
    if fit_key not in memo:
        reference = load_lm(base)
        memo[fit_key] = {"reference": reference,
                         "filter": OnionFilter.fit(reference, [e.input for e in data.test])}
    fitted = memo[fit_key]
    clean_key = (*fit_key, cell["trigger"])
    if clean_key not in memo:
        texts = [e.input for e in triggered(data.test, trigger, cell["seed"])]
        memo[clean_key] = fitted["filter"].clean_up(fitted["reference"], texts)
    return dict(fitted, cleaned_test=memo[clean_key])


def run_cell(cell: dict, sweep: Sweep, cache: Path | None, log: Callable[[str], None],
             memo: dict | None = None) -> dict:
    """One run of the sweep with its defenses; `memo` shares ONION work between cells."""
    memo = {} if memo is None else memo
    sizes = replace(sweep.task_sizes, name=cell["task"], seed=cell["seed"])
    data = generate_task(sizes)
    base = builtin_base(sizes, root=cache, log=log)
    trigger = parse_trigger(cell["trigger"])
    phrases = target_phrases(DEFAULT_TARGET)
    poisoned = poison_dataset(data.finetune, trigger, DEFAULT_TARGET, cell["rate"], cell["seed"])
    lm = load_lm(base)
    config = replace(sweep.finetune, method=cell["method"], virtual_tokens=max(cell["vt"], 1),
                     seed=cell["seed"], lr=dict(sweep.lrs)[cell["method"]])
    start = time.perf_counter()
    model = finetune(lm, poisoned.examples, config)
    train_seconds = time.perf_counter() - start
    metrics = evaluate(model, lm, data.test, trigger, DEFAULT_TARGET, phrases, cell["seed"])
    audit_inputs = [e.input for e in data.test[:AUDIT_INPUTS]]
    scan = consistency_scan(model, lm, audit_inputs, default_candidates(), cell["seed"])
    metrics["adapter_scan"] = {"max_collapse": scan[0]["collapse"], "top": scan[0],
                               "flagged": scan[0]["collapse"] >= COLLAPSE_THRESHOLD}
    onion = _onion(cell, base, data, trigger, memo)
    metrics["p_target_match_after_onion"] = target_match(
        generate(model, lm, onion["cleaned_test"]), phrases)
    if cell["rate"] == max(sweep.rates):
        # The training-set filters see inputs only: one poisoned set per trigger suffices.
        flags = onion["filter"].flag(onion["reference"], [e.input for e in poisoned.examples])
        rows = {r["index"] for r in poisoned.record["rows"]}
        metrics["training_filter"] = {k: detection(v, rows) for k, v in flags.items()}
    return dict(cell, metrics=metrics, train_seconds=train_seconds,
                seconds=time.perf_counter() - start, finetune=asdict(config))


_WORKER_MEMO: dict = {}  # a worker process's ONION memo, shared by the cells it runs


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_cell(cell: dict, sweep: Sweep, cache: Path | None) -> dict:
    return run_cell(cell, sweep, cache, lambda line: print(line, file=sys.stderr, flush=True),
                    _WORKER_MEMO)


def _worker_base(task: str, seed: int, sweep: Sweep, cache: Path | None) -> str:
    sizes = replace(sweep.task_sizes, name=task, seed=seed)
    return str(builtin_base(sizes, root=cache,
                            log=lambda line: print(line, file=sys.stderr, flush=True)))


def _results(todo: list[dict], sweep: Sweep, cache: Path | None, log: Callable[[str], None],
             workers: int) -> Iterator[tuple[dict, dict]]:
    """(cell, result) as each finishes: in this process, or in `workers` processes of one
    torch thread each (the base models first, one per task and seed, so that no two
    processes train the same one)."""
    if workers <= 1:
        memo: dict = {}
        for cell in todo:
            yield cell, run_cell(cell, sweep, cache, log, memo)
        return
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(workers, context, initializer=_init_worker,
                             initargs=(1,)) as pool:
        bases = sorted({(c["task"], c["seed"]) for c in todo})
        list(pool.map(_worker_base, *zip(*bases, strict=True),
                      [sweep] * len(bases), [cache] * len(bases)))
        futures = {pool.submit(_worker_cell, cell, sweep, cache): cell for cell in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_sweep(sweep: Sweep, results_file: Path, cache: Path | None = None,
              log: Callable[[str], None] = print, workers: int = 1) -> dict:
    """Run every cell not yet in `results_file`, saving after each; returns all results.
    `workers` > 1 runs cells in that many processes at once (one per core)."""
    saved = json.loads(results_file.read_text()) if results_file.is_file() else {"cells": {}}
    # Most telling cells first (comparisons, clean baselines and the 2 % rate, the most
    # virtual tokens), so that a sweep cut short still answers the main questions.
    todo = sorted((c for c in cells(sweep) if key(c) not in saved["cells"]),
                  key=lambda c: (c["method"] == "prefix", c["rate"] not in (0.0, 0.02), -c["vt"]))
    log(f"{len(todo)} of {len(cells(sweep))} cells to run ({len(saved['cells'])} saved, "
        f"{workers} worker{'s' if workers > 1 else ''})")
    saved["workers"] = max(workers, saved.get("workers", 1))
    clock = time.perf_counter()
    for i, (cell, result) in enumerate(_results(todo, sweep, cache, log, workers), start=1):
        saved["cells"][key(cell)] = result
        # the machine is shared: keep how loaded it was, to read the wall time against
        saved.setdefault("load_1min", []).append(os.getloadavg()[0])
        # wall time of the whole sweep (base models included), kept across resumed sessions
        now = time.perf_counter()
        saved["wall_seconds"] = saved.get("wall_seconds", 0.0) + now - clock
        clock = now
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(saved, indent=1))
        m = result["metrics"]
        log(f"[{i}/{len(todo)}] {key(cell)}: P {m['p_target_match']:.3f} C "
            f"{m['c_target_match']:.3f} ROUGE-L {m['rouge_clean']['rougeL']:.1f} "
            f"({result['seconds']:.0f} s)")
    return saved


def _get(run: dict, *path: str) -> float:
    value: object = run["metrics"]
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return float("nan")
        value = value[part]
    return float(value)  # type: ignore[arg-type]


COLUMNS = {  # summary column -> path in a run's metrics
    "P": ("p_target_match",), "C": ("c_target_match",), "exact": ("exact_hit_triggered",),
    "rougeL": ("rouge_clean", "rougeL"), "P_onion": ("p_target_match_after_onion",),
    "scan_flag": ("adapter_scan", "flagged"),
    "onion_det": ("training_filter", "onion", "detection_rate"),
    "onion_fa": ("training_filter", "onion", "false_alarm_rate"),
    "ppl_det": ("training_filter", "perplexity", "detection_rate"),
    "ppl_fa": ("training_filter", "perplexity", "false_alarm_rate"),
}


def summarise(saved: dict) -> list[dict]:
    """Medians over seeds per (task, method, vt, trigger, rate) (scan_flag: the share of
    seeds flagged), with the ROUGE-L change against the clean model of the same task,
    method, tokens and seed."""
    runs = list(saved["cells"].values())
    clean = {(r["task"], r["method"], r["vt"], r["seed"]): r for r in runs if r["rate"] == 0}
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["method"], r["vt"], r["trigger"], r["rate"]), []).append(r)
    rows = []
    for (task, method, vt, trig, rate), members in sorted(groups.items()):
        row = {"task": task, "method": method, "vt": vt, "trigger": trig, "rate": rate,
               "seeds": len(members), "seconds": sum(m["seconds"] for m in members)}
        for name, path in COLUMNS.items():
            values = [_get(m, *path) for m in members]
            row[name] = (statistics.mean(values) if name == "scan_flag"
                         else statistics.median(values))
        deltas = []
        for m in members:
            ref = clean.get((task, method, vt, m["seed"]))
            deltas.append(_get(m, "rouge_clean", "rougeL") - _get(ref, "rouge_clean", "rougeL")
                          if ref else float("nan"))
        row["d_rougeL"] = statistics.median(deltas)
        rows.append(row)
    return rows
