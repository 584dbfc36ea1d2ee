"""The built-in post-training benchmark: every method at every lambda on several seeds.

Per seed: generate the task, train a tiny base model on its corpus, run SFT alone and DPO
alone (f_SFT*, f_DPO*), then each method at each lambda from the same base, and Mix at
extra lambdas for the Pareto front. Each run is scored on the held-out sets.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import psutil
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import pad

from federation.errors import Pv4fadError
from llm_modules.alignment.post_training import PostTrainConfig, post_train
from llm_modules.alignment.post_training_losses import ObjectiveData, evaluate, objective_data
from llm_modules.alignment.post_training_tasks import (
    PostTrainingTask,
    TaskConfig,
    generate_task,
)
from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer

METHODS = ("sft-then-dpo", "dpo-then-sft", "mix", "alright", "maxright")
SEQUENTIAL = ("sft-then-dpo", "dpo-then-sft")
JOINT = ("alright", "maxright")
TIME_LIMIT = 1.1  # the joint methods' wall time may be at most this multiple of sequential


@dataclass(frozen=True)
class BenchSettings:
    """What the benchmark runs; `train` holds every setting shared by all runs."""

    seeds: tuple[int, ...] = (0, 1, 2)
    lambdas: tuple[float, ...] = (0.25, 0.5, 0.75)
    front_lambdas: tuple[float, ...] = (0.1, 0.9)  # Mix only, for the Pareto front
    task: TaskConfig = field(default_factory=TaskConfig)
    model: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(
        width=64, max_positions=48))
    base_epochs: int = 60
    base_lr: float = 3e-3
    train: PostTrainConfig = field(default_factory=lambda: PostTrainConfig(
        steps=300, lr=1e-3, batch_size=16, beta=0.1, schedule="constant", eval_every=30))


def settings(quick: bool, seeds: int | None = None, **train: float | str) -> BenchSettings:
    """Full: 3 seeds, 300 steps per run. Quick: 1 seed, 150 steps, a smaller task.
    `train` overrides trainer settings of every run (e.g. beta, schedule)."""
    if seeds is not None and seeds < 1:
        raise Pv4fadError(f"--seeds must be at least 1, got {seeds}")
    full = BenchSettings()
    full = replace(full, train=replace(full.train, **train))
    full.train.check()
    if not quick:
        return replace(full, seeds=tuple(range(seeds or 3)))
    return replace(
        full, seeds=tuple(range(seeds or 1)), task=replace(full.task, n_objects=40),
        base_epochs=50, train=replace(full.train, steps=150, eval_every=15),
    )


def train_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    corpus: list[str],
    epochs: int,
    lr: float,
    seed: int,
) -> float:
    """Plain language-model training on every token of the corpus; returns the final
    epoch's mean loss."""
    ids = [torch.tensor(tokenizer(s, add_special_tokens=False)["input_ids"]
                        + [tokenizer.eos_token_id]) for s in corpus]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    mean = math.inf
    for _ in range(epochs):
        order = torch.randperm(len(ids), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), 16):
            rows = [ids[i] for i in order[start : start + 16]]
            input_ids = pad(rows, padding_value=tokenizer.pad_token_id)
            mask = pad([torch.ones(len(r), dtype=torch.long) for r in rows], padding_value=0)
            loss = model(input_ids=input_ids, attention_mask=mask,
                         labels=input_ids.masked_fill(mask == 0, -100)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        mean = sum(losses) / len(losses)
    model.eval()
    return mean


def build_base(
    seed: int, bench: BenchSettings
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, PostTrainingTask, float]:
    """The seed's task, tokenizer and base model (trained on the corpus), and its loss."""
    task = generate_task(replace(bench.task, seed=seed))
    tokenizer = word_level_tokenizer(task.texts())
    model = tiny_causal_lm(bench.model, tokenizer, seed)
    loss = train_base(model, tokenizer, task.corpus, bench.base_epochs, bench.base_lr, seed)
    return model, tokenizer, task, loss


class _RssSampler:
    """The process's resident set, sampled every 5 ms by one thread for the whole process
    life (a thread per run would add its own heap arena to every measurement)."""

    _shared: _RssSampler | None = None

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.lock = threading.Lock()  # a reset must not be overwritten by an older peak
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            rss = self.process.memory_info().rss
            with self.lock:
                self.peak = max(self.peak, rss)
            time.sleep(0.005)

    @classmethod
    def get(cls) -> _RssSampler:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def reset(self) -> int:
        with self.lock:
            self.peak = self.process.memory_info().rss
            return self.peak


class PeakMemory:
    """Peak memory of a block above its start, in MiB: CUDA's allocator peak on a GPU,
    else the process's resident set (freed heap handed back to the system first, so one
    run's leftovers do not hide the next one's growth)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mib = device, 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        sampler = _RssSampler.get()
        _trim_heap()
        self._start = sampler.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            sampler = _RssSampler.get()
            peak = max(sampler.peak, sampler.process.memory_info().rss)
        self.peak_mib = (peak - self._start) / 2**20


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline simply includes retained heap


def single_objective_runs(
    base: PreTrainedModel, train: ObjectiveData, held_out: ObjectiveData, config: PostTrainConfig
) -> tuple[dict, dict]:
    """SFT alone and DPO alone: their runs, and the optima they give: held-out (the ideal
    point, best value along the run) and training-set (for MAXRIGHT's gaps, at the end)."""
    runs, optimum = {}, {}
    for name, lam, column in (("sft", 0.0, 1), ("dpo", 1.0, 2)):
        model = copy.deepcopy(base)
        run = _run(model, train, held_out, replace(config, method=name, lam=lam))
        train_values = evaluate(model, train, config.beta)
        optimum[f"{name}_held_out"] = min(point[column] for point in run["trajectory"])
        optimum[f"{name}_train"] = train_values[column - 1]
        runs[f"{name}@{lam:g}"] = run
    return runs, optimum


def _run(
    model: PreTrainedModel, train: ObjectiveData, held_out: ObjectiveData, config: PostTrainConfig
) -> dict:
    with PeakMemory(next(model.parameters()).device) as memory:
        result = post_train(model, train, config, held_out)
    final_sft, final_dpo = result.final
    return {"method": config.method, "lam": config.lam, "final_sft": final_sft,
            "final_dpo": final_dpo, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "peak_mib": memory.peak_mib,
            "updates": result.updates, "trajectory": [list(p) for p in result.trajectory]}


def score(run: dict, optimum: dict) -> dict:
    """Distance to the ideal point (f_SFT*, f_DPO*) and the lambda-weighted gap
    (1 - lambda)(f_SFT - f_SFT*) + lambda (f_DPO - f_DPO*), on held-out data."""
    gap_sft = run["final_sft"] - optimum["sft_held_out"]
    gap_dpo = run["final_dpo"] - optimum["dpo_held_out"]
    lam = run["lam"]
    return {**run, "distance": math.hypot(gap_sft, gap_dpo),
            "weighted_gap": (1 - lam) * gap_sft + lam * gap_dpo}


def run_seed(seed: int, bench: BenchSettings, log: Callable[[str], None]) -> dict:
    """Every run of one seed, scored; keyed "method@lambda"."""
    base, tokenizer, task, base_loss = build_base(seed, bench)
    train = objective_data(tokenizer, base, task.sft_train, task.preference_train)
    held_out = objective_data(tokenizer, base, task.sft_eval, task.preference_eval)
    config = replace(bench.train, seed=seed)
    runs, optimum = single_objective_runs(base, train, held_out, config)
    log(f"seed {seed}: base LM loss {base_loss:.3f}; f_SFT* {optimum['sft_held_out']:.3f}, "
        f"f_DPO* {optimum['dpo_held_out']:.3f} (held out)")
    config = replace(config, sft_opt=optimum["sft_train"], dpo_opt=optimum["dpo_train"])
    jobs = [(m, lam) for lam in bench.lambdas for m in METHODS]
    jobs += [("mix", lam) for lam in bench.front_lambdas]
    for method, lam in jobs:
        run = _run(copy.deepcopy(base), train, held_out, replace(config, method=method, lam=lam))
        runs[f"{method}@{lam:g}"] = run
        log(f"seed {seed} {method} lambda {lam:g}: f_SFT {run['final_sft']:.3f} "
            f"f_DPO {run['final_dpo']:.3f} ({run['seconds']:.1f} s)")
    return {"seed": seed, "base_loss": base_loss, "optimum": optimum,
            "sizes": {"sft_train": len(task.sft_train), "preference_train":
                      len(task.preference_train), "sft_eval": len(task.sft_eval),
                      "preference_eval": len(task.preference_eval)},
            "runs": {key: score(run, optimum) for key, run in runs.items()}}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


METRICS = ("final_sft", "final_dpo", "distance", "weighted_gap", "seconds", "cpu_seconds",
           "peak_mib")


def summarise(per_seed: list[dict], lambdas: tuple[float, ...]) -> dict:
    """Median (min-max) over seeds per method and lambda, the wall-time and CPU-time ratios
    to sequential (per seed, against the mean of the two sequential orders at that lambda:
    both do the same steps), and whether each joint method met the issue's bar."""
    table: dict[str, dict] = {}
    for key in per_seed[0]["runs"]:
        table[key] = {m: spread([s["runs"][key][m] for s in per_seed]) for m in METRICS}
        table[key]["dpo_share"] = spread([
            s["runs"][key]["updates"]["dpo"] / max(1, sum(s["runs"][key]["updates"].values()))
            for s in per_seed])
    verdict = {}
    for lam in lambdas:
        for method in METHODS:
            key = f"{method}@{lam:g}"
            for clock in ("seconds", "cpu_seconds"):
                table[key][f"{clock}_ratio"] = spread(
                    [_time_ratio(s, method, lam, clock) for s in per_seed])
        for method in JOINT:
            row = table[f"{method}@{lam:g}"]
            closer = all(row["distance"]["median"] < table[f"{s}@{lam:g}"]["distance"]["median"]
                         for s in SEQUENTIAL)
            verdict[f"{method}@{lam:g}"] = {
                "closer_than_both_sequential": closer,
                "time_within_limit": row["seconds_ratio"]["median"] <= TIME_LIMIT,
                "cpu_time_within_limit": row["cpu_seconds_ratio"]["median"] <= TIME_LIMIT,
            }
    return {"table": table, "verdict": verdict,
            "optimum": {k: spread([s["optimum"][k] for s in per_seed])
                        for k in per_seed[0]["optimum"]}}


def _time_ratio(seed_result: dict, method: str, lam: float, clock: str) -> float:
    runs = seed_result["runs"]
    sequential = statistics.mean(runs[f"{s}@{lam:g}"][clock] for s in SEQUENTIAL)
    return runs[f"{method}@{lam:g}"][clock] / sequential


def run_benchmark(
    quick: bool,
    seeds: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    on_seed: Callable[[dict], None] | None = None,
    **train: float | str,
) -> dict:
    """Run every seed; `on_seed` gets the result so far after each (partial results kept);
    `train` overrides trainer settings (see `settings`)."""
    bench = settings(quick, seeds, **train)
    started = time.perf_counter()
    # Tiny models gain nothing from intra-op threads; one thread also makes runs
    # reproducible bit for bit and keeps timings comparable under a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    per_seed: list[dict] = []
    result: dict = {}
    try:
        for seed in bench.seeds:
            per_seed.append(run_seed(seed, bench, log))
            result = {"quick": quick, "settings": asdict(bench), "per_seed": per_seed,
                      "summary": summarise(per_seed, bench.lambdas),
                      "seconds": time.perf_counter() - started}
            if on_seed is not None:
                on_seed(result)
    finally:
        torch.set_num_threads(threads)
    return result
