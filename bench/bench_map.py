"""Benchmark of MAP (multi-human-value alignment palette) on the built-in tiny LM.

Three built-in values (positiveness, harmlessness, coherence); five feasible palettes
(levels at 50-90 % quantiles of p0's rewards) realised by decoding on fresh generations,
three infeasible ones; sequential alignment, random lambdas, palette adjustment, a
fine-tuning realisation; and the solve time over 10^5 samples x 6 values. Medians
(min-max) over seeds. Writes the figures as a markdown section.

    .venv/bin/python bench/bench_map.py --out docs/benchmarks/map.md   # 3 seeds (minutes)
    .venv/bin/python bench/bench_map.py --quick                        # 1 small seed
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from llm_modules.alignment.map.bench import MapBenchSettings, quick_settings, run_benchmark
from llm_modules.alignment.map.bench_render import render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", help="directory for the built-in LM (default $PV4FAD_CACHE)")
    parser.add_argument("--json-out", default="runs/bench-map.json", help="full result (JSON)")
    parser.add_argument("--out", help="write the markdown section here (else print it)")
    args = parser.parse_args()
    bench = quick_settings() if args.quick else MapBenchSettings()
    with tempfile.TemporaryDirectory() as scratch:
        result = run_benchmark(bench, Path(args.cache) if args.cache else None, Path(scratch),
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(result, indent=1))
    section = render(result)
    if args.out:
        Path(args.out).write_text(section)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
