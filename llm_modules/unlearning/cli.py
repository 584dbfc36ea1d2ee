"""`pv4fad llm unlearn | eval-unlearning | assess | bench-unlearning`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.models import load_causal_lm, save_causal_lm
from llm_modules.unlearning.data import QA_FORMAT, PromptFormat, load_facts, load_tofu_split
from llm_modules.unlearning.evaluate import score_splits
from llm_modules.unlearning.methods import METHODS
from llm_modules.unlearning.metrics import report
from llm_modules.unlearning.openunlearning import (
    metrics_from_retain_logs,
    read_retain_logs,
    write_results,
)
from llm_modules.unlearning.spunge import BUDGETS, MERGES, split_by_attribute, spunge
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn
from llm_modules.unlearning.wagle import MASK_KINDS, build_mask


def register_llm(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("unlearn", help="unlearn a forget set from a causal LM")
    run.add_argument("--model", required=True, help="saved Hugging Face causal LM directory")
    run.add_argument("--method", required=True, choices=sorted(METHODS))
    run.add_argument("--forget", required=True, help="forget facts (JSON lines)")
    run.add_argument("--retain", required=True, help="retain facts (JSON lines)")
    run.add_argument("--out", required=True, help="directory for the unlearned model")
    run.add_argument(
        "--wagle", type=float, metavar="RATIO", help="keep this top fraction of weights trainable"
    )
    run.add_argument("--mask-kind", default="wagle", choices=MASK_KINDS)
    run.add_argument("--spunge-attr", metavar="NAME", help="split the forget set on this attribute")
    run.add_argument("--merge", default="ties", choices=MERGES)
    run.add_argument("--spunge-budget", default="epochs", choices=BUDGETS,
                     help="SPUNGE subset length: epochs (same passes per fact as a dense run) "
                          "or steps (each subset the dense run's number of optimiser steps)")
    run.add_argument("--ties-keep", type=float, default=0.2,
                     help="TIES: fraction of each task vector kept by magnitude")
    run.add_argument("--merge-scale", type=float, default=1.0,
                     help="SPUNGE: lambda, the merged task vector's scale")
    _add_training_options(run)
    _add_prompt_options(run)
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_unlearn)

    evaluate = commands.add_parser("eval-unlearning", help="TOFU-style metrics of a model")
    evaluate.add_argument("--model", required=True)
    _add_split_options(evaluate)
    _add_prompt_options(evaluate)
    evaluate.add_argument("--retain-model", help="retain-only model (forget quality, privleak)")
    evaluate.add_argument("--retain-logs", help="instead of --retain-model: open-unlearning's "
                          "TOFU_EVAL.json of the retain model (forget_truth_ratio, mia_min_k)")
    evaluate.add_argument("--results-out", type=Path, help="write DIR/TOFU_EVAL.json and "
                          "DIR/TOFU_SUMMARY.json in open-unlearning's layout")
    evaluate.add_argument("--scores-out", type=Path,
                          help="write the per-fact membership scores (min-k%%) of the forget "
                               "and holdout sets to DIR/mia_scores.json, for "
                               "`pv4fad audit --out DIR`")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    assess = commands.add_parser(
        "assess", help="one report: efficacy, generalisation, utility, robustness, efficiency")
    assess.add_argument("--builtin", action="store_true",
                        help="the built-in tiny task: generated facts, tiny models trained "
                             "from configs (nothing downloaded; cached like bench-unlearning)")
    assess.add_argument("--data-dir", help="--builtin: cache directory (default $PV4FAD_CACHE)")
    assess.add_argument("--target", help="the model before unlearning")
    assess.add_argument("--model", help="an already unlearned model (else --method unlearns "
                        "--target here, timed)")
    assess.add_argument("--method", choices=sorted(METHODS),
                        help="unlearn --target (or the built-in target) with this method")
    assess.add_argument("--retain-model", help="retain-only model (forget quality, privleak, "
                        "relearning baseline)")
    _add_split_options(assess)
    assess.add_argument("--paraphrased", help="generalisation: the forget facts with reworded "
                        "questions (fact file)")
    assess.add_argument("--related", help="generalisation: related questions about the forget "
                        "set's subjects (fact file)")
    assess.add_argument("--icl-shots", type=int, default=2,
                        help="in-context relearning: exposed forget facts in each prompt")
    assess.add_argument("--exposed-fraction", type=float, default=0.5,
                        help="share of the forget set used for the shots and the relearning; "
                             "the rest is measured")
    assess.add_argument("--relearn-steps", type=int, default=5)
    assess.add_argument("--relearn-lr", type=float, default=1e-3)
    assess.add_argument("--retrain-seconds", type=float,
                        help="measured cost of retraining on the retain set (else estimated "
                             "from measured steps; --builtin: the retain-only model's training)")
    assess.add_argument("--retrain-epochs", type=int, default=5,
                        help="retraining length for the estimate (TOFU fine-tunes 5 epochs)")
    assess.add_argument("--out", required=True, type=Path,
                        help="directory for assessment.md, assessment.json and the PNG plots")
    _add_training_options(assess)
    _add_prompt_options(assess)
    assess.add_argument("--json", action="store_true")
    assess.set_defaults(func=cmd_assess)

    bench = commands.add_parser("bench-unlearning", help="built-in benchmark of every method")
    bench.add_argument("--quick", action="store_true", help="small benchmark (minutes on a CPU)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3 quick, 5 full)")
    bench.add_argument("--data-dir", help="cache directory (default $PV4FAD_CACHE)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """The unlearning run's options (unlearn and assess)."""
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int,
                        help="optimiser steps instead of --epochs passes over the forget set")
    parser.add_argument("--fp32-master", action="store_true",
                        help="bf16/fp16 models: keep float32 master weights for AdamW, so small "
                          "updates accumulate instead of rounding away (CUDA bf16 training)")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beta", type=float, help="inverse temperature of NPO / IdkDPO "
                        "(default 0.1) and SimNPO (default 4.5)")
    parser.add_argument("--gamma", type=float, default=1.0, help="weight of the forget term")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the retain term")
    parser.add_argument("--delta", type=float, default=0.0, help="SimNPO's margin")
    parser.add_argument("--retain-loss", default="nll", choices=["nll", "kl"],
                        help="retain term: NLL, or KL to the starting model")
    parser.add_argument("--steering", type=float, default=20.0, help="RMU steering coefficient")
    parser.add_argument("--rmu-layer", type=int, help="RMU: decoder block whose output is steered "
                        "(0-based; default the middle one)")
    parser.add_argument("--seed", type=int, default=0)


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    """The evaluation splits (eval-unlearning and assess)."""
    parser.add_argument("--forget", help="forget facts (JSON lines, JSON, Parquet)")
    parser.add_argument("--retain", help="retain facts")
    parser.add_argument("--holdout", help="never-trained facts (for MIA / privleak)")
    parser.add_argument("--world", help="general-knowledge facts (for model utility)")
    parser.add_argument("--real-authors", help="TOFU real-authors facts (model utility)")
    parser.add_argument("--world-facts", help="TOFU world-facts facts (model utility)")
    parser.add_argument("--tofu-dir", help="local TOFU download: reads forget/holdout "
                          "(--tofu-forget), retain_perturbed, real_authors and world_facts")
    parser.add_argument("--tofu-forget", default="forget10",
                          choices=["forget01", "forget05", "forget10"])


def _add_prompt_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt-format", default="plain", choices=["plain", "qa", "chat"],
        help="plain: 'question answer<eos>' (built-in benchmark); qa: open-unlearning's "
             "'Question: ...\\nAnswer: ' for base models; chat: the tokenizer's chat template")
    parser.add_argument("--system-prompt", help="chat: system message (e.g. open-unlearning's "
                        "'You are a helpful assistant.' for Llama-3 instruct models)")
    parser.add_argument("--date-string", help="chat: date_string passed to the template")
    parser.add_argument("--no-bos", action="store_true",
                        help="qa: tokenise without the tokenizer's special tokens (no BOS)")


def prompt_format(args: argparse.Namespace) -> PromptFormat | None:
    """The prompt format the options name (None: the built-in plain format)."""
    if args.prompt_format != "chat" and (args.system_prompt or args.date_string):
        raise Pv4fadError("--system-prompt and --date-string need --prompt-format chat")
    if args.prompt_format == "plain":
        if args.no_bos:
            raise Pv4fadError("--no-bos applies to --prompt-format qa")
        return None
    if args.prompt_format == "qa":
        return PromptFormat(**{**QA_FORMAT.__dict__, "add_bos": not args.no_bos})
    return PromptFormat(apply_chat_template=True, system_prompt=args.system_prompt,
                        date_string=args.date_string)


def _check_ratio(ratio: float | None) -> None:
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise Pv4fadError(f"--wagle RATIO must be in (0, 1], got {ratio}")


def unlearn_config(args: argparse.Namespace) -> UnlearnConfig:
    """The UnlearnConfig the unlearning options name (shared by unlearn and assess)."""
    if args.max_steps is not None and args.max_steps < 1:
        raise Pv4fadError(f"--max-steps must be at least 1, got {args.max_steps}")
    return UnlearnConfig(
        method=args.method, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        beta=args.beta, gamma=args.gamma, alpha=args.alpha, delta=args.delta,
        retain_loss=args.retain_loss, seed=args.seed, prompt=prompt_format(args),
        steering=args.steering, rmu_layer=args.rmu_layer, max_steps=args.max_steps,
        fp32_master=args.fp32_master,
    )


def cmd_unlearn(args: argparse.Namespace) -> int:
    _check_ratio(args.wagle)
    config = unlearn_config(args)
    forget = load_facts(args.forget, role="forget")
    retain = load_facts(args.retain, role="retain")
    model, tokenizer = load_causal_lm(args.model)

    def mask_for(worker, subset):
        if args.wagle is None:
            return None
        return build_mask(args.mask_kind, worker, tokenizer, subset, retain, args.wagle, args.seed)

    def on_epoch(epoch: int, loss: float) -> None:
        progress(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}")

    if args.spunge_attr:
        subsets = split_by_attribute(forget, args.spunge_attr)
        sizes = ", ".join(f"{value} ({len(facts)})" for value, facts in subsets.items())
        progress(f"SPUNGE on {args.spunge_attr!r}: unlearning {len(subsets)} subsets: {sizes}")
        spunge(model, tokenizer, forget, retain, config, args.spunge_attr, args.merge,
               keep=args.ties_keep, scale=args.merge_scale, mask_for=mask_for,
               budget=args.spunge_budget)
    else:
        unlearn(model, tokenizer, forget, retain, config, mask_for(model, forget), on_epoch)
    out = save_causal_lm(model, tokenizer, args.out)
    result = {"out": str(out), "method": args.method, "wagle": args.wagle,
              "spunge_attr": args.spunge_attr, "forget_facts": len(forget)}
    emit(result, args.json, f"unlearned model written to {out}")
    return 0


def eval_splits(args: argparse.Namespace) -> dict[str, list]:
    """Splits from --tofu-dir, overridden or completed by the per-split file options."""
    splits: dict[str, list] = {}
    if args.tofu_dir:
        holdout = "holdout" + args.tofu_forget.removeprefix("forget")
        for name, tofu in [("forget", args.tofu_forget), ("retain", "retain"),
                           ("holdout", holdout), ("real_authors", "real_authors"),
                           ("world_facts", "world_facts")]:
            splits[name] = load_tofu_split(args.tofu_dir, tofu)
    for name in ("forget", "retain", "holdout", "world", "real_authors", "world_facts"):
        path = getattr(args, name)
        if path:
            splits[name] = load_facts(
                path, for_eval=True, role=name, needs_perturbed=name != "holdout",
                answer_based=name in ("world", "real_authors", "world_facts"),
            )
    missing = [name for name in ("forget", "retain") if name not in splits]
    if missing:
        raise Pv4fadError(f"eval-unlearning: no {' or '.join(missing)} split: give "
                          f"--{missing[0]} FILE or --tofu-dir DIR")
    return splits


def cmd_eval(args: argparse.Namespace) -> int:
    fmt = prompt_format(args)  # option errors before any file is read
    if args.retain_model and args.retain_logs:
        raise Pv4fadError("eval-unlearning: give --retain-model or --retain-logs, not both")
    logs = read_retain_logs(args.retain_logs) if args.retain_logs else None
    splits = eval_splits(args)
    model, tokenizer = load_causal_lm(args.model)
    reference = None
    if args.retain_model:
        retain_model, retain_tokenizer = load_causal_lm(args.retain_model)
        reference = score_splits(retain_model, retain_tokenizer, splits, fmt)
    scores = score_splits(model, tokenizer, splits, fmt)
    metrics = report(scores, reference)
    if logs is not None:
        metrics = metrics_from_retain_logs(scores, metrics, logs)
    if args.results_out is not None:
        write_results(args.results_out, scores, metrics)
    if args.scores_out is not None:
        _write_mia_scores(args.scores_out, scores, reference)
    human = "\n".join(f"{name:32s} {value:.4f}" for name, value in metrics.items())
    emit({"model": args.model, "metrics": metrics}, args.json, human)
    return 0


def _write_mia_scores(out: Path, scores: Any, reference: Any) -> None:
    """Forget (members) and holdout (non-members) min-k% scores of the model and, when
    given, of the retain-only model: what the audit's privleak reads."""
    import json

    if "holdout" not in scores:
        raise Pv4fadError("eval-unlearning: --scores-out needs --holdout (the non-members)")

    def pick(s: Any) -> dict[str, list[float]]:
        return {"forget": list(s["forget"].min_k), "holdout": list(s["holdout"].min_k)}

    data = {"score": "min-k% log-probability (higher: more member-like)",
            "model": pick(scores)}
    if reference is not None:
        data["retain_model"] = pick(reference)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mia_scores.json").write_text(json.dumps(data))


def _builtin_inputs(args: argparse.Namespace):
    """The built-in task for assess: the quick benchmark's data and models for --seed
    (built and cached on first use), the paraphrased / related probes, and the retain-only
    model's measured training as the retraining cost."""
    from dataclasses import replace

    from llm_modules.unlearning.bench import settings
    from llm_modules.unlearning.benchmark import build_benchmark

    given = [f"--{name.replace('_', '-')}" for name in (
        "target", "retain_model", "forget", "retain", "holdout", "world", "real_authors",
        "world_facts", "tofu_dir", "paraphrased", "related") if getattr(args, name)]
    if given or args.prompt_format != "plain":
        raise Pv4fadError(f"assess --builtin brings its own models, splits and prompt format: "
                          f"drop {', '.join(given) or '--prompt-format'}")
    root = Path(args.data_dir) if args.data_dir else None
    paths = build_benchmark(replace(settings(True).data, seed=args.seed), root, log=progress)
    every = paths.load_splits(extra=True)
    splits = {name: every[name] for name in ("forget", "retain", "holdout", "world")}
    probes = {"paraphrased": every["forget_paraphrased"], "related": every["forget_related"]}
    target = load_causal_lm(paths.target)
    retain_model = load_causal_lm(paths.retain_model)
    trained = paths.training()["retain_model"]
    retrain = {**trained, "kind": "measured: training the built-in retain-only model from "
               "scratch on the retain and world facts (when the benchmark was built)"}
    return target, retain_model, splits, probes, retrain


def _file_inputs(args: argparse.Namespace, fmt: PromptFormat | None):
    """Models and splits named by the options; the retraining cost given or estimated."""
    from llm_modules.unlearning.assess import estimate_retraining

    splits = eval_splits(args)
    if "holdout" not in splits:
        raise Pv4fadError("assess: no holdout split (the membership attacks' non-members): "
                          "give --holdout FILE or --tofu-dir DIR")
    probes = {name: load_facts(getattr(args, name), role=name)
              for name in ("paraphrased", "related") if getattr(args, name)}
    target = load_causal_lm(args.target) if args.target else None
    retain_model = load_causal_lm(args.retain_model) if args.retain_model else None
    if args.retrain_seconds is not None:
        retrain = {"seconds": args.retrain_seconds, "kind": "given (--retrain-seconds)"}
    elif target is not None:
        progress("estimating the retraining cost from measured steps")
        retrain = estimate_retraining(target, splits["retain"], args.retrain_epochs,
                                      args.batch_size, fmt)
    else:
        retrain = None
    return target, retain_model, splits, probes, retrain


def cmd_assess(args: argparse.Namespace) -> int:
    import copy

    from llm_modules.unlearning.assess import (
        AssessConfig,
        assess,
        efficiency,
        measure,
        write_report,
    )

    fmt = prompt_format(args)
    config = AssessConfig(icl_shots=args.icl_shots, exposed_fraction=args.exposed_fraction,
                          relearn_steps=args.relearn_steps, relearn_lr=args.relearn_lr,
                          relearn_batch=args.batch_size, seed=args.seed)
    config.check()
    if args.model is None and (args.method is None or (args.target is None and
                                                       not args.builtin)):
        raise Pv4fadError("assess: give --model (already unlearned), or --method with "
                          "--target (or --builtin) to unlearn here")
    if args.model is not None and args.method is not None:
        raise Pv4fadError("assess: give --model or --method, not both")
    if args.builtin:
        import torch

        # one thread, as the benchmark builds and trains: the retraining cost it recorded
        # and the unlearning timed here then compare like for like
        torch.set_num_threads(1)
        target, retain_model, splits, probes, retrain = _builtin_inputs(args)
    else:
        target, retain_model, splits, probes, retrain = _file_inputs(args, fmt)
    cost = None
    if args.model is not None:
        unlearned = load_causal_lm(args.model)
    else:
        train = unlearn_config(args)
        net, tokenizer = target
        worker = copy.deepcopy(net)
        progress(f"unlearning {len(splits['forget'])} facts with {args.method}")
        _, spent = measure(lambda: unlearn(worker, tokenizer, splits["forget"],
                                           splits["retain"], train),
                           next(worker.parameters()).device)
        unlearned = (worker, tokenizer)
        cost = efficiency({**spent, "method": args.method, "lr": args.lr,
                           "steps": train.steps_for(len(splits["forget"]))}, retrain)
    models = {"unlearned": unlearned}
    if target is not None:
        models["target"] = target
    if retain_model is not None:
        models["retain_model"] = retain_model
    result = assess(models, splits, config, generalisation=probes, fmt=fmt, cost=cost,
                    log=progress)
    written = write_report(result, args.out)
    nan = float("nan")
    eff, utility = result["efficacy"]["unlearned"], result["utility"]["unlearned"]
    relearned = result["robustness"]["relearning"]["unlearned"]
    lines = [f"forget probability {eff.get('forget_probability', nan):.3f}, "
             f"forget quality {eff.get('forget_quality', nan):.3f}, "
             f"model utility {utility.get('model_utility', nan):.3f}",
             f"relearning: measured-facts probability {relearned['probability_before']:.3f}"
             f" -> {relearned['probability_after']:.3f}",
             f"report: {written['markdown']}"]
    emit({"report": written, "assessment": result}, args.json, "\n".join(lines))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from llm_modules.unlearning.bench import HEADLINE, run_benchmark

    root = Path(args.data_dir) if args.data_dir else None
    result = run_benchmark(args.quick, args.seeds, root, log=progress)
    lines = [f"{'variant':22s} {'lr (per seed)':>20s} "
             + " ".join(f"{m[:14]:>14s}" for m in HEADLINE)]
    for variant, row in result["summary"].items():
        cells = " ".join(f"{row[m]['median']:14.3f}" for m in HEADLINE)
        lines.append(f"{variant:22s} {','.join(row['lr']):>20s} {cells}")
    lines.append(f"model utility if forget quality >= {result['fq_threshold']} (median):")
    for variant, spread in result["utility_at_forgetting"].items():
        lines.append(f"  {variant:22s} {spread['median']:.3f}")
    lines.append(f"medians over seeds {result['seeds']} on the reported split, learning rate "
                 f"chosen on the validation split; {result['seconds']:.0f} s")
    emit(result, args.json, "\n".join(lines))
    return 0
