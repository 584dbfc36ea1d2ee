"""Wall time of the two ways to simulate a federation on one machine, on the same tiny data.

- `pv4fad simulate`: Flower's Simulation Runtime engine in the command's own process
  (federation/simulation.py), the default path;
- `deploy/run_flwr_local.sh`: `flwr run .` against a local simulation SuperLink, with
  runtime dependency installation off (Flower's supported CLI path).

Runs alternate between the two (same data, same protocol defaults), so a busy machine
slows both alike; figures are medians, the ratio is against `pv4fad simulate` measured in
the same session. Writes docs/benchmarks/simulate_paths.{md,json} with --write.

    python bench/bench_simulate_paths.py --reps 3 --out runs/bench-simulate-paths [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The virtual environment running this script (its bin/ holds flwr and flower-superlink).
VENV = Path(os.environ.get("PV4FAD_VENV") or Path(sys.executable).parents[1])


def _env() -> dict[str, str]:
    # The code of this checkout, whichever virtual environment runs it.
    return {**os.environ, "PYTHONPATH": str(REPO), "PV4FAD_VENV": str(VENV)}


def _simulate(data: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "federation.cli", "simulate", "--data",
                           str(data), "--out", str(out), "--json", "--no-pr-curve"],
                          capture_output=True, text=True, timeout=1800, env=_env())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_simulate_paths: pv4fad simulate failed:\n{done.stderr[-2000:]}")
    return {"seconds": wall, "auprc": json.loads(done.stdout)["auprc"]}


def _flwr_local(data: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([str(REPO / "deploy" / "run_flwr_local.sh"), "--data", str(data),
                           "--out", str(out)], capture_output=True, text=True, timeout=1800,
                          env=_env())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_simulate_paths: run_flwr_local.sh failed:\n{done.stderr[-2000:]}")
    return {"seconds": wall, "auprc": json.loads(done.stdout.strip().splitlines()[-1])["auprc"]}


PATHS = {"pv4fad simulate (in-process engine)": _simulate,
         "flwr run . + local SuperLink (run_flwr_local.sh)": _flwr_local}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="new or empty directory")
    parser.add_argument("--write", action="store_true",
                        help="write docs/benchmarks/simulate_paths.{md,json}")
    args = parser.parse_args()
    data = args.out / "data"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "federation.cli", "data", "generate", "--out",
                        str(data), "--scale", "tiny", "--seed", "0"], check=True,
                       capture_output=True, timeout=600, env=_env())
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PATHS}
    for rep in range(args.reps):
        for i, (name, run) in enumerate(PATHS.items()):
            runs[name].append(run(data, args.out / f"path{i}-rep{rep}"))
            print(f"rep {rep}: {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    base = statistics.median(r["seconds"] for r in runs[next(iter(PATHS))])
    result = {"reps": args.reps, "load_average_end": os.getloadavg()[0],
              "median_seconds": {n: round(statistics.median(r["seconds"] for r in rs), 1)
                                 for n, rs in runs.items()},
              "ratio_to_simulate": {n: round(statistics.median(r["seconds"] for r in rs)
                                             / base, 2) for n, rs in runs.items()},
              "runs": runs}
    print(json.dumps(result))
    if args.write:
        _write(result)


def _write(result: dict) -> None:
    out = REPO / "docs" / "benchmarks"
    (out / "simulate_paths.json").write_text(json.dumps(result, indent=1) + "\n")
    def each(runs: list[dict], key: str, fmt: str) -> str:
        return " / ".join(format(r[key], fmt) for r in runs)

    rows = [f"| {name} | {result['median_seconds'][name]} | {each(runs, 'seconds', '.0f')} | "
            f"{result['ratio_to_simulate'][name]} | {each(runs, 'auprc', '.3f')} |"
            for name, runs in result["runs"].items()]
    (out / "simulate_paths.md").write_text(f"""## Simulation paths (one machine)

Command: `python bench/bench_simulate_paths.py --reps {result['reps']} --out DIR --write`
(tiny data, scenario01: PNS + 2 bank clients; train then test, protocol defaults, no
precision-recall figure; runs alternate between the two paths; 2 CPU cores shared with
other jobs, load average {result['load_average_end']:.1f} at the end). Whole command, wall
seconds:

| path | median s | runs s | x `pv4fad simulate` | AUPRC per run |
|---|---:|---|---:|---|
{chr(10).join(rows)}

Both run the same ServerApp and ClientApp code through the same Flower Simulation Runtime
engine. `pv4fad simulate` calls the engine in its own process (federation/simulation.py);
Flower 1.42's public wrapper for that, `flwr.simulation.run_simulation`, is deprecated,
and the project no longer calls it. `run_flwr_local.sh` starts a SuperLink, builds and
submits the app bundle with `flwr run .`, and the SuperLink runs the simulation in a
separate process (its own imports and Ray start), polled every 2 s: the extra time is
those steps (not broken down here). AUPRC differs between runs through the protocol's
differential-privacy noise, fresh in every run.
""")


if __name__ == "__main__":
    main()
