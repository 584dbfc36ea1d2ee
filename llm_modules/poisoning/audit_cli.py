"""`pv4fad audit poisoning`: audit delivered adapters and training sets for NLG backdoors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.poisoning.audit import (
    audit_adapter,
    audit_training_set,
    default_candidates,
    detection_summary,
)
from llm_modules.poisoning.poison import parse_trigger
from llm_modules.poisoning.run import load_examples


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pv4fad audit poisoning",
        description="Scan adapters for backdoors (output consistency under candidate triggers) "
                    "and training sets for trigger words (ONION, perplexity).")
    p.add_argument("--data", required=True, help="clean validation pairs (JSON lines)")
    p.add_argument("--adapter", action="append", default=[], metavar="PATH",
                   help="adapter or fine-tuned model to audit (repeatable; counted as poisoned "
                        "in the detection rate)")
    p.add_argument("--clean-adapter", action="append", default=[], metavar="PATH",
                   help="known-clean adapter (repeatable; gives the false-alarm rate)")
    p.add_argument("--base", help="base model of the adapters (default: as each records)")
    p.add_argument("--candidate", action="append", default=[], metavar="SPEC",
                   help="candidate trigger (repeatable; default: presets and rare words)")
    p.add_argument("--scan-vocab", type=int, default=0, metavar="N",
                   help="also try N single words of the vocabulary as triggers")
    p.add_argument("--target", help="suspected target output (adds P-/C-Target Match)")
    p.add_argument("--threshold", type=float, default=0.5, help="collapse score that flags")
    p.add_argument("--train", help="training set to filter with ONION (JSON lines)")
    p.add_argument("--reference", help="causal LM for ONION perplexities (default: --base)")
    p.add_argument("--record", help="poisoning record of --train (gives detection rates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if not args.adapter and not args.clean_adapter and not args.train:
        raise Pv4fadError("audit poisoning: give --adapter PATH, --clean-adapter PATH or "
                          "--train FILE")
    if not 0.0 < args.threshold <= 1.0:
        raise Pv4fadError(f"--threshold must be in (0, 1], got {args.threshold}")
    data = load_examples(args.data, "validation")
    candidates = ([parse_trigger(c) for c in args.candidate] if args.candidate
                  else default_candidates())
    result: dict = {"poisoned": [], "clean": []}
    lines = []
    for label, paths in (("poisoned", args.adapter), ("clean", args.clean_adapter)):
        for path in paths:
            progress(f"auditing {path}")
            row = audit_adapter(path, data, base=args.base, candidates=candidates,
                                scan_vocab=args.scan_vocab, target=args.target,
                                threshold=args.threshold, seed=args.seed)
            result[label].append(row)
            top = (row["candidates"] + row["vocabulary_scan"] or [{}])
            best = max(top, key=lambda r: r.get("collapse", 0.0))
            lines.append(f"{path}: {'FLAGGED' if row['flagged'] else 'not flagged'} "
                         f"(max collapse {row['max_collapse']:.2f}, by {best.get('candidate')}"
                         f" -> {best.get('dominant_output')!r}); clean ROUGE-L "
                         f"{row['rouge_clean']['rougeL']:.1f}")
    if args.adapter or args.clean_adapter:
        result["detection"] = detection_summary(result["poisoned"], result["clean"])
    if args.train:
        reference = args.reference or args.base
        if reference is None:
            raise Pv4fadError("ONION filtering of --train needs --reference PATH (or --base)")
        result["training_set"] = audit_training_set(args.train, reference,
                                                    [e.input for e in data], args.record)
        ts = result["training_set"]
        lines.append(f"{args.train}: ONION flags {ts['flagged']['onion']}, perplexity flags "
                     f"{ts['flagged']['perplexity']} of {ts['examples']}")
        for name, rates in ts.get("detection", {}).items():
            lines.append(f"  {name}: detection {rates['detection_rate']:.2f}, false alarms "
                         f"{rates['false_alarm_rate']:.2f}")
    emit(result, args.json, "\n".join(lines))
    return 0
