"""Benchmark of the LLM unlearning suite on the built-in TOFU-style task.

Runs every variant (GradAscent, GradDiff, NPO, with and without WAGLE and baseline masks,
SPUNGE(NPO) with TIES and task arithmetic at two step budgets, RMU) on several seeds and
prints medians (min-max) across seeds. Each seed is a repetition with its own generated
entities and its own target and retain-only models. The learning rate of each variant is
chosen per seed on a validation forget set (other entities than the reported forget set);
the reported split is unlearned once, at that rate.

    .venv/bin/python bench/bench_unlearning.py --quick            # 3 seeds, 40 entities
    .venv/bin/python bench/bench_unlearning.py                    # 5 seeds, 100 entities
    .venv/bin/python bench/bench_unlearning.py --quick --out runs/unlearning-quick.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_modules.unlearning.bench import run_benchmark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--data-dir", help="cache for generated data and models")
    parser.add_argument("--out", help="write the full result (JSON) here")
    args = parser.parse_args()

    def keep(result: dict) -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))

    result = run_benchmark(
        args.quick, args.seeds, Path(args.data_dir) if args.data_dir else None,
        log=lambda line: print(line, file=sys.stderr, flush=True), on_seed=keep,
    )
    columns = ("forget_quality", "model_utility", "forget_probability", "forget_rouge",
               "privleak")
    print(f"| variant | lr per seed | total steps | {' | '.join(columns)} |")
    print("|---|---|---|" + "---|" * len(columns))
    steps = result["per_seed"][0]["test"]
    for variant, row in result["summary"].items():
        cells = [
            f"{row[c]['median']:.3f} ({row[c]['min']:.3f} to {row[c]['max']:.3f})"
            for c in columns
        ]
        total = steps[variant].get("steps", {}).get("total_steps", "-")
        print(f"| {variant} | {', '.join(row['lr'])} | {total} | {' | '.join(cells)} |")
    print("\nValidation split (learning rate chosen here): forget quality / model utility")
    print("| variant | " + " | ".join(f"lr {lr:g}" for lr in result["learning_rates"]) + " |")
    print("|---|" + "---|" * len(result["learning_rates"]))
    for variant, by_lr in result["validation_summary"].items():
        cells = [f"{m['forget_quality']['median']:.3f} / {m['model_utility']['median']:.3f}"
                 for m in by_lr.values()]
        print(f"| {variant} | {' | '.join(cells)} |")
    print(f"\n| variant | model utility if forget quality >= {result['fq_threshold']} |")
    print("|---|---|")
    for variant, spread in result["utility_at_forgetting"].items():
        low, high = spread["min"], spread["max"]
        print(f"| {variant} | {spread['median']:.3f} ({low:.3f} to {high:.3f}) |")
    print(f"\nmedian (min to max) over seeds {result['seeds']}; epochs {result['epochs']}; "
          f"{result['seconds']:.0f} s in total", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
