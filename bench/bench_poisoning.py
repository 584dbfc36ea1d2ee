"""Sweep benchmark of the NLG poisoning audit on the built-in tasks.

Poison rate x trigger design x virtual tokens x task (x seeds; the full sweep adds a
three-word rare trigger, 10 tokens, seeds 0-2, and LoRA and full fine-tuning), each with
the defenses. Results are saved after each cell, so a rerun resumes; --report renders
docs/benchmarks/poisoning.md (and plots) from the saved results without running anything.

    .venv/bin/python bench/bench_poisoning.py --quick       # quick sweep, then the report
    .venv/bin/python bench/bench_poisoning.py               # full sweep (hours)
    .venv/bin/python bench/bench_poisoning.py --quick --report
    .venv/bin/python bench/bench_poisoning.py --seeds   # 2 % poison, 60 tokens, seeds 0-2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from llm_modules.poisoning.bench import FULL, QUICK, SEEDS, run_sweep
from llm_modules.poisoning.report import render

DOCS = Path("docs/benchmarks")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", action="store_true",
                        help="the quick sweep's 2 %% / 60-token prefix cells over seeds 0-2")
    parser.add_argument("--report", action="store_true", help="only render saved results")
    parser.add_argument("--results", help="results file (default docs/benchmarks/"
                                          "poisoning[_quick].json)")
    parser.add_argument("--cache", help="where the built-in base models are kept")
    parser.add_argument("--workers", type=int, default=2,
                        help="cells run at once, one process and one core each (default 2)")
    args = parser.parse_args()
    sweep, name, flag = ((SEEDS, "poisoning_seeds", " --seeds") if args.seeds else
                         (QUICK, "poisoning_quick", " --quick") if args.quick else
                         (FULL, "poisoning", ""))
    results = Path(args.results) if args.results else DOCS / f"{name}.json"
    command = "python bench/bench_poisoning.py" + flag
    if not args.report:
        torch.set_num_threads(1)  # the machine is shared; one thread is also the fastest here
        run_sweep(sweep, results, Path(args.cache) if args.cache else None,
                  log=lambda line: print(line, file=sys.stderr, flush=True),
                  workers=args.workers)
    if not results.is_file():
        print(f"no saved results at {results}", file=sys.stderr)
        return 2
    saved = json.loads(results.read_text())
    page = DOCS / ("poisoning_seeds.md" if args.seeds else "poisoning.md")
    title = ("NLG poisoning audit (issue 17): seeds 0-2 at 2 % poison" if args.seeds
             else "NLG poisoning audit (issue 17)")
    page.write_text(render(saved, DOCS / "figures", command, title=title,
                            stem="poisoning_seeds" if args.seeds else "poisoning",
                            budget_min=20.0 if args.quick and not args.seeds else None))
    print(f"{page} rendered from {len(saved['cells'])} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
