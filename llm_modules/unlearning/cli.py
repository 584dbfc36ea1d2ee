"""`pv4fad llm unlearn | eval-unlearning | bench-unlearning`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.models import load_causal_lm, save_causal_lm
from llm_modules.unlearning.data import load_facts
from llm_modules.unlearning.evaluate import score_splits
from llm_modules.unlearning.methods import METHODS
from llm_modules.unlearning.metrics import report
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
    run.add_argument("--beta", type=float, default=0.1, help="NPO inverse temperature")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_unlearn)

    evaluate = commands.add_parser("eval-unlearning", help="TOFU-style metrics of a model")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--forget", required=True)
    evaluate.add_argument("--retain", required=True)
    evaluate.add_argument("--holdout", help="never-trained facts (for MIA / privleak)")
    evaluate.add_argument("--world", help="general-knowledge facts (for model utility)")
    evaluate.add_argument("--retain-model", help="retain-only model (forget quality, privleak)")
    evaluate.add_argument("--scores-out", type=Path,
                          help="write the per-fact membership scores (min-k%%) of the forget "
                               "and holdout sets to DIR/mia_scores.json, for `pv4fad audit DIR`")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    bench = commands.add_parser("bench-unlearning", help="built-in benchmark of every method")
    bench.add_argument("--quick", action="store_true", help="small benchmark (minutes on a CPU)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3 quick, 5 full)")
    bench.add_argument("--data-dir", help="cache directory (default $PV4FAD_CACHE)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)


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
        beta=args.beta, seed=args.seed,
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


def cmd_eval(args: argparse.Namespace) -> int:
    splits = {"forget": load_facts(args.forget, for_eval=True, role="forget"),
              "retain": load_facts(args.retain, for_eval=True, role="retain")}
    for name in ("holdout", "world"):
        if getattr(args, name):
            splits[name] = load_facts(getattr(args, name), for_eval=True, role=name)
    model, tokenizer = load_causal_lm(args.model)
    reference = None
    if args.retain_model:
        retain_model, retain_tokenizer = load_causal_lm(args.retain_model)
        reference = score_splits(retain_model, retain_tokenizer, splits)
    scores = score_splits(model, tokenizer, splits)
    metrics = report(scores, reference)
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
