"""`pv4fad llm calibrate bench`: the LinC benchmark on the built-in task, or unchanged on
any causal LM by path with your own prompt files and data."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.calibration.cache import ProbabilityCache


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="the LinC benchmark (built-in task or your files)")
    bench.add_argument("--quick", action="store_true", help="2 seeds, 0/4 shots (minutes)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 5; quick 2)")
    bench.add_argument("--model", help="your causal LM (with --prompt, --pool, --validation, "
                                       "--test); default: the built-in tiny LM and task")
    bench.add_argument("--prompt", action="append", help="prompt file (repeat per template)")
    bench.add_argument("--pool", help="demonstration pool (.jsonl or .csv)")
    bench.add_argument("--validation", help="labelled examples for fitting calibrators")
    bench.add_argument("--test", help="evaluation examples")
    bench.add_argument("--lr", type=float,
                       help="LinC's learning rate (required with --model; default: tuned)")
    bench.add_argument("--epochs", type=int, help="LinC's epochs (default 15)")
    bench.add_argument("--no-federated", action="store_true", help="skip the Flower part")
    bench.add_argument("--cache", help="SQLite result cache to reuse (default: a fresh one)")
    bench.add_argument("--data-dir", help="built-in model cache (default $PV4FAD_CACHE)")
    bench.add_argument("--threads", type=int, default=1,
                       help="torch intra-op threads (default 1: a tiny model gains nothing "
                            "from more, and on a shared CPU more threads spin-wait)")
    bench.add_argument("--out", help="write the full result (JSON) here")
    bench.add_argument("--markdown", help="write the benchmark section (Markdown) here")
    bench.add_argument("--figures", help="write reliability and entropy figures here")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)


def _settings(args: argparse.Namespace):
    from llm_modules.calibration.grid import BenchSettings, quick_settings

    settings = quick_settings() if args.quick else BenchSettings()
    if args.seeds is not None:
        if args.seeds < 1:
            raise Pv4fadError(f"--seeds must be at least 1, got {args.seeds}")
        settings = replace(settings, seeds=tuple(range(args.seeds)))
    if args.lr is not None:
        if args.lr <= 0:
            raise Pv4fadError(f"--lr must be > 0, got {args.lr}")
        settings = replace(settings, linc_lr=args.lr)
    if args.epochs is not None:
        if args.epochs < 0:
            raise Pv4fadError(f"--epochs must be >= 0, got {args.epochs}")
        settings = replace(settings, linc_epochs=args.epochs)
    return settings


def _task(args: argparse.Namespace, settings):
    from llm_modules.calibration.data import load_examples
    from llm_modules.calibration.grid import builtin_task, file_task
    from llm_modules.calibration.prompts import load_prompt

    if args.model is None:
        root = Path(args.data_dir) if args.data_dir else None
        return builtin_task(settings, root, progress)
    missing = [f"--{n}" for n in ("prompt", "pool", "validation", "test")
               if not getattr(args, n)]
    if missing:
        raise Pv4fadError(f"--model needs {', '.join(missing)}")
    prompts = [load_prompt(p) for p in args.prompt]
    classes = prompts[0].classes

    def examples(name: str):
        return load_examples(getattr(args, name), classes=classes, role=name)

    return file_task(args.model, prompts, examples("pool"), examples("validation"),
                     examples("test"))


def temporary_cache() -> tuple[ProbabilityCache, tempfile.TemporaryDirectory]:
    """A fresh SQLite cache in a temporary directory (shared with federated owners)."""
    holder = tempfile.TemporaryDirectory(prefix="pv4fad-calibration-")
    return ProbabilityCache(Path(holder.name) / "probs.sqlite"), holder


def _write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1, default=str))


def cmd_bench(args: argparse.Namespace) -> int:
    from llm_modules.calibration.bench import run_benchmark
    from llm_modules.calibration.report import section, write_figures
    from llm_modules.calibration.scoring import LabelScorer
    from server.calibration import run_federated_linc

    settings = _settings(args)
    if args.threads < 1:
        raise Pv4fadError(f"--threads must be at least 1, got {args.threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    holder = None
    try:
        started, load_before = time.perf_counter(), os.getloadavg()
        if args.cache:
            cache = ProbabilityCache(args.cache)
        else:
            cache, holder = temporary_cache()
        task = _task(args, settings)
        model_seconds = time.perf_counter() - started
        scorer = LabelScorer(task.model_path, cache)
        result = run_benchmark(settings, task, scorer, progress,
                               None if args.no_federated else run_federated_linc,
                               keep=lambda partial: _write_json(args.out, partial))
        result["seconds"] = {"model": model_seconds, **result["seconds"],
                             "total": time.perf_counter() - started}
        result["machine"] = {"cpus": os.cpu_count(), "torch_threads": args.threads,
                             "load_average_before": load_before[0],
                             "load_average_after": os.getloadavg()[0],
                             "device": str(scorer.device.device)}
    finally:
        torch.set_num_threads(previous)
        if holder is not None:
            holder.cleanup()
    _write_json(args.out, result)
    if args.figures:
        result["figures"] = [str(p) for p in write_figures(result, args.figures)]
    text = section(result, args.figures)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    emit(result, args.json, text)
    return 0
