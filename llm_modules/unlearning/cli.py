"""`pv4fad llm unlearn | eval-unlearning | bench-unlearning`."""

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
from llm_modules.unlearning.spunge import MERGES, split_by_attribute, spunge
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
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--lr", type=float, default=4e-4)
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--beta", type=float, help="inverse temperature of NPO / IdkDPO "
                     "(default 0.1) and SimNPO (default 4.5)")
    run.add_argument("--gamma", type=float, default=1.0, help="weight of the forget term")
    run.add_argument("--alpha", type=float, default=1.0, help="weight of the retain term")
    run.add_argument("--delta", type=float, default=0.0, help="SimNPO's margin")
    run.add_argument("--retain-loss", default="nll", choices=["nll", "kl"],
                     help="retain term: NLL, or KL to the starting model")
    run.add_argument("--steering", type=float, default=20.0, help="RMU steering coefficient")
    run.add_argument("--rmu-layer", type=int, help="RMU: decoder block whose output is steered "
                     "(0-based; default the middle one)")
    run.add_argument("--seed", type=int, default=0)
    _add_prompt_options(run)
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_unlearn)

    evaluate = commands.add_parser("eval-unlearning", help="TOFU-style metrics of a model")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--forget", help="forget facts (JSON lines, JSON, Parquet)")
    evaluate.add_argument("--retain", help="retain facts")
    evaluate.add_argument("--holdout", help="never-trained facts (for MIA / privleak)")
    evaluate.add_argument("--world", help="general-knowledge facts (for model utility)")
    evaluate.add_argument("--real-authors", help="TOFU real-authors facts (model utility)")
    evaluate.add_argument("--world-facts", help="TOFU world-facts facts (model utility)")
    evaluate.add_argument("--tofu-dir", help="local TOFU download: reads forget/holdout "
                          "(--tofu-forget), retain_perturbed, real_authors and world_facts")
    evaluate.add_argument("--tofu-forget", default="forget10",
                          choices=["forget01", "forget05", "forget10"])
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

    bench = commands.add_parser("bench-unlearning", help="built-in benchmark of every method")
    bench.add_argument("--quick", action="store_true", help="small benchmark (minutes on a CPU)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3 quick, 5 full)")
    bench.add_argument("--data-dir", help="cache directory (default $PV4FAD_CACHE)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)


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


def cmd_unlearn(args: argparse.Namespace) -> int:
    _check_ratio(args.wagle)
    forget = load_facts(args.forget, role="forget")
    retain = load_facts(args.retain, role="retain")
    model, tokenizer = load_causal_lm(args.model)
    config = UnlearnConfig(
        method=args.method, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        beta=args.beta, gamma=args.gamma, alpha=args.alpha, delta=args.delta,
        retain_loss=args.retain_loss, seed=args.seed, prompt=prompt_format(args),
        steering=args.steering, rmu_layer=args.rmu_layer,
    )

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
               mask_for=mask_for)
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


def cmd_bench(args: argparse.Namespace) -> int:
    from llm_modules.unlearning.bench import HEADLINE, run_benchmark

    root = Path(args.data_dir) if args.data_dir else None
    result = run_benchmark(args.quick, args.seeds, root, log=progress)
    lines = [f"{'variant':22s} {'lr':>7s} " + " ".join(f"{m[:14]:>14s}" for m in HEADLINE)]
    for variant, by_lr in result["summary"].items():
        for lr, metrics in by_lr.items():
            cells = " ".join(f"{metrics[m]['median']:14.3f}" for m in HEADLINE)
            lines.append(f"{variant:22s} {lr:>7s} {cells}")
    lines.append(f"best utility with forget quality >= {result['fq_threshold']} (median):")
    for variant, spread in result["utility_at_forgetting"].items():
        lines.append(f"  {variant:22s} {spread['median']:.3f}")
    lines.append(f"medians over seeds {result['seeds']}; {result['seconds']:.0f} s")
    emit(result, args.json, "\n".join(lines))
    return 0
