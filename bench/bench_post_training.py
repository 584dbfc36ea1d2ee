"""Benchmark of joint SFT + DPO post-training (ALRIGHT, MAXRIGHT) against sequential.

Runs the built-in task (llm_modules/alignment/post_training_bench.py) on 3 seeds: SFT alone
and DPO alone for the ideal point, then SFT->DPO, DPO->SFT, Mix, ALRIGHT and MAXRIGHT at
lambda 0.25 / 0.5 / 0.75 and Mix at 0.1 / 0.9 for the Pareto front. Writes the full result
(JSON), the trajectory plot, and the generated part of the benchmark section (between its
markers; the text around them is kept). A variant (`--beta`, `--schedule`) is a
sensitivity run: it gets its own block, plot and result directory, named by `--tag`.

    .venv/bin/python bench/bench_post_training.py             # 3 seeds, under 20 min on 2 cores
    .venv/bin/python bench/bench_post_training.py --quick     # 1 seed, under 3 min
    .venv/bin/python bench/bench_post_training.py --schedule cosine --tag cosine-lr
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_modules.alignment.post_training_bench import run_benchmark
from llm_modules.alignment.post_training_report import plot_trajectories, summary_tables


def write_section(path: Path, tag: str, generated: str) -> None:
    """Replace the text between the tag's markers (or append them with the text)."""
    start = f"<!-- generated: bench/bench_post_training.py {tag} -->"
    end = f"<!-- end of generated {tag} -->"
    block = f"{start}\n{generated.strip()}\n{end}"
    text = path.read_text() if path.exists() else "## Post-training: ALRIGHT and MAXRIGHT\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--beta", type=float, help="DPO beta of every run (default 0.1)")
    parser.add_argument("--schedule", help="learning-rate schedule (default constant)")
    parser.add_argument("--tag", default="main", help="name of this run's block and files")
    parser.add_argument("--section", default="docs/benchmarks/post_training.md",
                        help="section file to update ('' to leave it alone)")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("beta", args.beta), ("schedule", args.schedule)) if v}
    suffix = "" if args.tag == "main" else f"_{args.tag}"
    out = Path(f"runs/bench-post-training{suffix}")
    out.mkdir(parents=True, exist_ok=True)

    def keep(result: dict) -> None:
        (out / "result.json").write_text(json.dumps(result, indent=1))

    result = run_benchmark(args.quick, args.seeds, on_seed=keep,
                           log=lambda line: print(line, file=sys.stderr, flush=True), **overrides)
    plot = plot_trajectories(result, f"docs/benchmarks/post_training{suffix}.png")
    tables = summary_tables(result)
    print(tables)
    if args.section:
        command = " ".join(["bench/bench_post_training.py", *sys.argv[1:]])
        write_section(Path(args.section), args.tag,
                      f"Reproduce: `.venv/bin/python {command}`; plot: `{plot}`.\n\n{tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
