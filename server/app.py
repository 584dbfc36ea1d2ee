"""The coordinator's ServerApp for a deployment (`flwr run` against a SuperLink).

The run config (pyproject `[tool.flwr.app.config]` or `flwr run --run-config`) names the
number of parties, the coordinator's run directory, the stages and the public protocol
parameters; `pv4fad simulate` drives the same Coordinator in one process.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.server import Grid, ServerApp

from federation.config import ProtocolConfig
from federation.errors import Pv4fadError
from server.coordinator import Coordinator

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    from federation.cli import progress

    cfg = dict(context.run_config)
    config = ProtocolConfig.from_record(
        {k.replace("-", "_"): v for k, v in cfg.items()})
    stages = tuple(x.strip() for x in str(cfg.get("stages", "train,test")).split(","))
    if cfg.get("simulation"):
        _simulation(grid, cfg, config, stages)
        return
    coordinator = Coordinator(grid, int(cfg["num-parties"]), Path(str(cfg["run-dir"])),
                              config, progress, str(cfg.get("label-rendezvous", "")))
    try:
        for stage in stages:
            report = getattr(coordinator, stage.strip())()
            for party, reason in report.failed.items():
                progress(f"[{report.stage}] party {party} failed: {reason}")
    except Pv4fadError as exc:
        # The cause in one line that deploy/run_local.sh (or an operator) can find in the
        # run's log, above Flower's own report of the failed run.
        progress(f"pv4fad: error: {exc}")
        raise


def _simulation(grid: Grid, cfg: dict, config: ProtocolConfig, stages: tuple[str, ...]
                ) -> None:
    """`flwr run .` against a local simulation SuperLink (deploy/run_flwr_local.sh): the
    operator is every party, as in `pv4fad simulate`, so this ServerApp prepares the
    parties (identities, policies, layout.json for the simulated SuperNodes), runs the
    same coordinator and writes the same run directory: run.json, summary.json,
    ledger.jsonl, predictions.csv."""
    import time

    from federation.cli import progress
    from federation.simulate import finish_run, prepare_run, serve

    try:
        run = prepare_run(Path(str(cfg["run-dir"])), Path(str(cfg["data-root"])) if cfg.get(
            "data-root") else None, str(cfg.get("scenario") or "") or None, config, stages)
        if len(run.parties) != int(cfg["num-parties"]):
            raise Pv4fadError(f"{run.scenario} has {len(run.parties)} parties; the run config "
                              f"says num-parties={cfg['num-parties']} (and the SuperLink "
                              "must simulate that many SuperNodes)")
        started = time.perf_counter()
        summary = finish_run(run, serve(grid, run), time.perf_counter() - started)
        progress(f"pv4fad: finished: AUPRC {summary.get('auprc')}, summary in "
                 f"{run.run_dir / 'summary.json'}")
    except Pv4fadError as exc:
        progress(f"pv4fad: error: {exc}")
        raise
