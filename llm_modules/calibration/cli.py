"""`pv4fad llm calibrate task | probs | fit | evaluate | bench`."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.calibration.bench_cli import add_bench_parser
from llm_modules.calibration.cache import ProbabilityCache
from llm_modules.calibration.calibrators import (
    CALIBRATORS,
    load_calibrator,
    make_calibrator,
    save_calibrator,
)
from llm_modules.calibration.data import load_examples, save_examples
from llm_modules.calibration.metrics import entropy_histogram, reliability, report
from llm_modules.calibration.probsfile import load_probabilities, save_probabilities
from llm_modules.calibration.prompts import load_prompt, sample_demonstrations, save_prompt


def register_llm(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("calibrate", help="LinC: calibrated in-context learning")
    sub = parser.add_subparsers(dest="calibrate_command", required=True, metavar="STEP")

    task = sub.add_parser("task", help="write the built-in task's data, prompts and tiny LM")
    task.add_argument("--out", required=True, help="directory for the files")
    task.add_argument("--seed", type=int, default=0)
    task.add_argument("--data-dir", help="model cache (default $PV4FAD_CACHE)")
    task.add_argument("--json", action="store_true")
    task.set_defaults(func=cmd_task)

    probs = sub.add_parser("probs", help="label probabilities of a causal LM on a data file")
    probs.add_argument("--model", required=True, help="saved Hugging Face causal LM directory")
    probs.add_argument("--prompt", required=True, help="prompt file (template, label words)")
    probs.add_argument("--data", required=True, help="examples to score (.jsonl or .csv)")
    probs.add_argument("--pool", help="examples to draw demonstrations from")
    probs.add_argument("--shots", type=int, default=0, help="number of demonstrations")
    probs.add_argument("--seed", type=int, default=0, help="seed of the demonstration draw")
    probs.add_argument("--text-field", default="text")
    probs.add_argument("--label-field", default="label")
    probs.add_argument("--batch-size", type=int, default=16)
    probs.add_argument("--cache", help="SQLite result cache (reused across runs)")
    probs.add_argument("--out", required=True, help="probability file to write (JSON)")
    probs.add_argument("--json", action="store_true")
    probs.set_defaults(func=cmd_probs)

    fit = sub.add_parser("fit", help="fit a calibrator on a labelled probability file")
    fit.add_argument("--probs", required=True)
    fit.add_argument("--method", required=True, choices=sorted(CALIBRATORS))
    fit.add_argument("--size", type=int, help="use only the first N examples")
    fit.add_argument("--lr", type=float, default=0.1, help="LinC's SGD learning rate")
    fit.add_argument("--epochs", type=int, default=15, help="LinC's epochs")
    fit.add_argument("--seed", type=int, default=0, help="LinC's shuffling seed")
    fit.add_argument("--out", required=True, help="calibrator file to write (JSON)")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=cmd_fit)

    evaluate = sub.add_parser("evaluate", help="metrics of (calibrated) probabilities")
    evaluate.add_argument("--probs", required=True)
    evaluate.add_argument("--calibrator", help="calibrator file (default: none)")
    evaluate.add_argument("--figures", help="write a reliability diagram and entropy histogram")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_evaluate)
    add_bench_parser(sub)


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise Pv4fadError(f"{name} must be at least {minimum}, got {value}")


def cmd_task(args: argparse.Namespace) -> int:
    from llm_modules.calibration.builtin import TaskModelConfig, build_task_model
    from llm_modules.calibration.task import PROMPTS, task_splits

    out = Path(args.out)
    splits = task_splits(args.seed)
    for name in ("pool", "validation", "test"):
        save_examples(getattr(splits, name), out / f"{name}.jsonl")
    for spec in PROMPTS:
        save_prompt(spec, out / "prompts" / f"{spec.name}.json")
    root = Path(args.data_dir) if args.data_dir else None
    model = build_task_model(TaskModelConfig(), root, log=progress)
    shutil.copytree(model, out / "model", dirs_exist_ok=True)
    result = {"out": str(out), "model": str(out / "model"),
              "prompts": [spec.name for spec in PROMPTS], "seed": args.seed}
    emit(result, args.json, f"built-in task written to {out} (model, prompts/, "
                            f"pool/validation/test.jsonl)")
    return 0


def cmd_probs(args: argparse.Namespace) -> int:
    from llm_modules.calibration.scoring import LabelScorer

    _positive("--batch-size", args.batch_size)
    _positive("--shots", args.shots, minimum=0)
    spec = load_prompt(args.prompt)
    fields = {"classes": spec.classes, "text_field": args.text_field,
              "label_field": args.label_field}
    examples = load_examples(args.data, role="data", **fields)
    demos = []
    if args.shots:
        if not args.pool:
            raise Pv4fadError("--shots needs --pool (the examples demonstrations come from)")
        demos = sample_demonstrations(load_examples(args.pool, role="pool", **fields),
                                      args.shots, args.seed)
    scorer = LabelScorer(args.model, ProbabilityCache(args.cache), args.batch_size)
    progress(f"scoring {len(examples)} examples with {len(demos)} demonstrations")
    probs = scorer.probabilities(spec, demos, [e.text for e in examples])
    p_cf = scorer.content_free(spec, demos)
    out = save_probabilities(args.out, str(args.model), spec, demos, p_cf, examples, probs)
    predicted = np.bincount(probs.argmax(axis=1), minlength=len(spec.classes)).tolist()
    result = {"out": str(out), "examples": len(examples), "shots": len(demos),
              "p_cf": p_cf.tolist(),
              "predicted_counts": dict(zip(spec.classes, predicted, strict=True))}
    emit(result, args.json, f"{len(examples)} label-probability vectors written to {out}; "
                            f"p_cf {np.round(p_cf, 3).tolist()}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    _positive("--size", args.size)
    _positive("--epochs", args.epochs, minimum=0)
    data = load_probabilities(args.probs)
    n = args.size or len(data.examples)
    if n > len(data.examples):
        raise Pv4fadError(f"--size {n} exceeds the {len(data.examples)} examples of "
                          f"{args.probs}")
    options = ({"lr": args.lr, "epochs": args.epochs, "seed": args.seed}
               if args.method == "linc" else {})
    calibrator = make_calibrator(args.method, **options).fit(
        data.probs[:n], data.labels[:n], p_cf=data.p_cf)
    out = save_calibrator(calibrator, args.out, data.prompt.classes)
    fitted = report(calibrator.transform(data.probs[:n]), data.labels[:n])
    emit({"out": str(out), "method": args.method, "examples": n, "fit_metrics": fitted,
          "state": calibrator.state()}, args.json,
         f"{args.method} calibrator fitted on {n} examples written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    data = load_probabilities(args.probs)
    calibrator, classes = (load_calibrator(args.calibrator) if args.calibrator
                           else (make_calibrator("none"), data.prompt.classes))
    if classes and tuple(classes) != data.prompt.classes:
        raise Pv4fadError(f"the calibrator was fitted on classes {list(classes)}, "
                          f"{args.probs} has {list(data.prompt.classes)}")
    probs = calibrator.transform(data.probs)
    metrics = report(probs, data.labels)
    result = {"probs": args.probs, "method": calibrator.name, "metrics": metrics,
              "reliability": reliability(probs, data.labels),
              "entropy_histogram": entropy_histogram(probs)}
    if args.figures:
        from llm_modules.calibration.plots import entropy_plot, reliability_diagram

        title = f"{calibrator.name} on {Path(args.probs).name}"
        result["figures"] = [str(p) for p in (
            reliability_diagram({calibrator.name: result["reliability"]},
                                Path(args.figures) / "reliability.png", title),
            entropy_plot({calibrator.name: result["entropy_histogram"]},
                         Path(args.figures) / "entropy.png", title))]
    human = "\n".join(f"{name:20s} {value:.4f}" for name, value in metrics.items())
    emit(result, args.json, human)
    return 0

