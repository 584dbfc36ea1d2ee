"""Benchmark of LinC (linear probe calibration) on the built-in task, or unchanged on your
model and data (see docs/calibration.md).

Runs `pv4fad llm calibrate bench` and writes the section docs/benchmarks/calibration.md,
its figures and the full result as JSON:

    .venv/bin/python bench/bench_linc.py                 # 5 seeds, 0/1/4/8 shots (minutes)
    .venv/bin/python bench/bench_linc.py --quick         # 2 seeds, 0/4 shots
    .venv/bin/python bench/bench_linc.py --model PATH --prompt P.json --pool F --validation F \
        --test F --lr 0.03 --epochs 15 --markdown runs/linc.md
"""

from __future__ import annotations

import sys

from federation.cli import main as pv4fad

DEFAULTS = {
    "--out": "runs/bench-linc.json",
    "--markdown": "docs/benchmarks/calibration.md",
    "--figures": "docs/benchmarks/figures",
}


def main(argv: list[str]) -> int:
    extra = [item for flag, value in DEFAULTS.items() if flag not in argv
             for item in (flag, value)]
    return pv4fad(["llm", "calibrate", "bench", *argv, *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
