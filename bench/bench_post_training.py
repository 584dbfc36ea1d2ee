"""Benchmark of joint SFT + DPO post-training (ALRIGHT, MAXRIGHT) against sequential.

Runs the built-in task (llm_modules/alignment/post_training_bench.py) on 3 seeds: SFT alone
and DPO alone for the ideal point, then SFT->DPO, DPO->SFT, Mix, ALRIGHT and MAXRIGHT at
lambda 0.25 / 0.5 / 0.75 and Mix at 0.1 / 0.9 for the Pareto front. Writes the full result
(JSON), the trajectory plot, and the generated part of the benchmark section (between its
markers; the text around them is kept).

    .venv/bin/python bench/bench_post_training.py             # 3 seeds, under 20 min on 2 cores
    .venv/bin/python bench/bench_post_training.py --quick     # 1 seed, under 3 min
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_modules.alignment.post_training_bench import run_benchmark
from llm_modules.alignment.post_training_report import plot_trajectories, summary_tables

START, END = "<!-- generated: bench/bench_post_training.py -->", "<!-- end of generated -->"


def write_section(path: Path, generated: str) -> None:
    """Replace the text between the markers (or append them with the text)."""
    block = f"{START}\n{generated.strip()}\n{END}"
    text = path.read_text() if path.exists() else "## Post-training: ALRIGHT and MAXRIGHT\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--out", default="runs/bench-post-training",
                        help="directory for result.json")
    parser.add_argument("--plot", default="docs/benchmarks/post_training.png")
    parser.add_argument("--section", default="docs/benchmarks/post_training.md",
                        help="section file to update ('' to leave it alone)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def keep(result: dict) -> None:
        (out / "result.json").write_text(json.dumps(result, indent=1))

    result = run_benchmark(args.quick, args.seeds,
                           log=lambda line: print(line, file=sys.stderr, flush=True), on_seed=keep)
    plot_trajectories(result, args.plot)
    tables = summary_tables(result)
    print(tables)
    if args.section:
        command = "bench/bench_post_training.py" + (" --quick" if args.quick else "")
        write_section(Path(args.section), f"Reproduce: `.venv/bin/python {command}`.\n\n{tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
