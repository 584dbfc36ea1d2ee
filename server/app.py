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
from server.coordinator import Coordinator

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    from federation.cli import progress

    cfg = dict(context.run_config)
    config = ProtocolConfig.from_record(
        {k.replace("-", "_"): v for k, v in cfg.items()})
    coordinator = Coordinator(grid, int(cfg["num-parties"]), Path(str(cfg["run-dir"])),
                              config, progress, str(cfg.get("label-rendezvous", "")))
    for stage in str(cfg.get("stages", "train,test")).split(","):
        report = getattr(coordinator, stage.strip())()
        for party, reason in report.failed.items():
            progress(f"[{report.stage}] party {party} failed: {reason}")
