"""Benchmark the data foundation: generator time and peak memory per scale, and the
plaintext baselines' AUPRC, fit time and peak memory. Writes docs/benchmarks/data.md.

Each run is a separate process (so peak memory is that run's own) and each figure is the
median over repetitions. Usage:

    .venv/bin/python bench/bench_data.py --reps 3 --seeds 3 [--challenge-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
# The pv4fad CLI restricted to this command group, so other groups' imports don't count.
PV4FAD = [
    sys.executable,
    "-c",
    "import sys, federation.cli as c; c.COMMAND_MODULES = ('federation.data.cli',); "
    "sys.exit(c.main(sys.argv[1:]))",
]


def run_measured(cmd: list[str]) -> tuple[str, float, float]:
    """Run cmd; return (stdout, wall seconds, peak resident MiB of the process tree)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed with exit code {proc.returncode}")
    return out, time.perf_counter() - started, peak / 2**20


def bench_generate(work: Path, scale: str, seeds: list[int]) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        out = work / f"{scale}-seed{seed}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            *PV4FAD,
            "data",
            "generate",
            "--out",
            str(out),
            "--scale",
            scale,
            "--seed",
            str(seed),
            "--json",
        ]
        _, seconds, peak = run_measured(cmd)
        runs.append({"seed": seed, "seconds": seconds, "peak_mib": peak, "path": str(out)})
        print(f"generate {scale} seed {seed}: {seconds:.1f} s, {peak:.0f} MiB", file=sys.stderr)
    return runs


def bench_baselines(data: Path, scenario: str) -> dict[str, Any]:
    cmd = [*PV4FAD, "baseline", "--data", str(data), "--scenario", scenario, "--json"]
    out, seconds, peak = run_measured(cmd)
    result = json.loads(out)
    result["process_seconds"], result["process_peak_mib"] = seconds, peak
    print(
        f"baselines {data.name}: "
        + ", ".join(f"{k} {m['auprc']:.3f}" for k, m in result["models"].items()),
        file=sys.stderr,
    )
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; load average at start {load}"


def render(
    gen: dict[str, list[dict]], base: dict[str, list[dict]], args: argparse.Namespace, host: str
) -> str:
    lines = [
        "## Data: generator and plaintext baselines",
        "",
        f"Machine: {host}. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Reproduce: `.venv/bin/python bench/bench_data.py "
        + " ".join(a for a in sys.argv[1:])
        + "`",
        "",
        "### Generator (medians; each run a separate process)",
        "",
        "| scale | train + test rows | runs | seconds (median) | peak RSS MiB (median) |",
        "|---|---|---|---|---|",
    ]
    rows = {"tiny": "4 k + 2 k", "default": "1.0 M + 500 k", "challenge": "3.0 M + 1.0 M"}
    for scale, runs in gen.items():
        lines.append(
            f"| {scale} | {rows.get(scale, '?')} | {len(runs)} | "
            f"{median([r['seconds'] for r in runs]):.1f} | "
            f"{median([r['peak_mib'] for r in runs]):.0f} |"
        )
    lines += [
        "",
        f"### Baselines on {args.scenario} (test AUPRC; fit seconds and fit peak MiB medians)",
        "",
        "| data | seeds | model | AUPRC median | AUPRC min-max | fit s | fit peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, results in base.items():
        for model in results[0]["models"]:
            ms = [r["models"][model] for r in results]
            ap = [m["auprc"] for m in ms]
            lines.append(
                f"| {name} | {len(results)} | {model} | {median(ap):.3f} | "
                f"{min(ap):.3f}-{max(ap):.3f} | {median([m['fit_seconds'] for m in ms]):.1f} | "
                f"{median([m['peak_mib'] for m in ms]):.0f} |"
            )
        feats = [r["feature_seconds"] for r in results]
        lines.append(
            f"| {name} | {len(results)} | (PNS features, fit_transform of train) | | | "
            f"{median(feats):.1f} | {median([r['feature_peak_mib'] for r in results]):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="generator runs for tiny/default")
    parser.add_argument("--challenge-reps", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="default data sets for baselines")
    parser.add_argument("--scenario", default="scenario01")
    parser.add_argument("--skip-challenge", action="store_true")
    parser.add_argument("--challenge-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "data.md")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    host = machine()
    work = args.work or Path(tempfile.mkdtemp(prefix="pv4fad-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        gen = {
            "tiny": bench_generate(work, "tiny", list(range(1, args.reps + 1))),
            "default": bench_generate(
                work, "default", list(range(1, max(args.reps, args.seeds) + 1))
            ),
        }
        base = {
            "default": [
                bench_baselines(Path(r["path"]), args.scenario)
                for r in gen["default"][: args.seeds]
            ]
        }
        if not args.skip_challenge:
            gen["challenge"] = bench_generate(
                work, "challenge", list(range(1, args.challenge_reps + 1))
            )
            if args.challenge_baseline:
                base["challenge"] = [
                    bench_baselines(Path(gen["challenge"][0]["path"]), args.scenario)
                ]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(gen, base, args, host))
    (args.out.with_suffix(".json")).write_text(
        json.dumps({"generate": gen, "baselines": base}, indent=1)
    )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
