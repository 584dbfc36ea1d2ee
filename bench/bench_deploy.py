"""Wall time of the loopback deployment (deploy/run_local.sh) against `pv4fad simulate`.

Both run the same protocol on the same tiny data set; the deployment adds TLS, SuperNode
authentication, a ClientApp process per message and two separate runs (train, then test).

    .venv/bin/python bench/bench_deploy.py --reps 3 --out runs/bench-deploy
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PV4FAD = REPO / ".venv" / "bin" / "pv4fad"


def _deployment(data: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([str(REPO / "deploy" / "run_local.sh"), "--data", str(data), str(out)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_deploy: run_local.sh failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"total": time.perf_counter() - started, **summary["run_seconds"]}


def _simulation(data: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([str(PV4FAD), "simulate", "--data", str(data), "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_deploy: pv4fad simulate failed:\n{done.stderr[-2000:]}")
    return {"total": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="new or empty directory")
    args = parser.parse_args()
    data = args.out / "data"
    if not data.exists():
        subprocess.run([str(PV4FAD), "data", "generate", "--out", str(data), "--scale", "tiny",
                        "--seed", "0"], check=True, capture_output=True, timeout=600)
    runs: dict[str, list[dict[str, float]]] = {"deployment": [], "simulation": []}
    for rep in range(args.reps):
        runs["deployment"].append(_deployment(data, args.out / f"deploy-{rep}"))
        runs["simulation"].append(_simulation(data, args.out / f"simulate-{rep}"))
        print(f"rep {rep}: {json.dumps(runs)}", file=sys.stderr, flush=True)
    medians = {kind: {key: round(statistics.median(r[key] for r in reps), 1)
                      for key in reps[0]} for kind, reps in runs.items()}
    print(json.dumps({"reps": args.reps, "median_seconds": medians, "runs": runs}))


if __name__ == "__main__":
    main()
