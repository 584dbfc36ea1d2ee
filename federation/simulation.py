"""The one place that decides how a federation is simulated on one machine.

Choice: Flower's in-process Simulation Runtime (`flwr.simulation.run_simulation`) with the
Ray backend. It runs the very ServerApp and ClientApp objects a deployment runs, needs no
SuperLink process and no per-run `uv` environment, and lets `pv4fad simulate` be one
command. It is deprecated in Flower 1.42 in favour of `flwr run` against a local SuperLink;
deployments use that path (see deploy/README.md), and switching simulation over only
touches this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from flwr.app import Context
from flwr.client import ClientApp
from flwr.server import Grid, ServerApp

from federation.errors import ProtocolError, Pv4fadError

ServerMain = Callable[[Grid, Context], Any]


def run_federation(
    server_main: ServerMain,
    client_app: ClientApp,
    num_supernodes: int,
    *,
    cpus_per_client: float = 1.0,
    verbose: bool = False,
) -> Any:
    """Run `server_main(grid, context)` against `num_supernodes` simulated ClientApps.

    Returns what `server_main` returns. An exception raised inside it is re-raised here
    (Flower itself would only log it), so callers see the real error.
    """
    import warnings

    from flwr.simulation import run_simulation

    outcome: dict[str, Any] = {}
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            outcome["result"] = server_main(grid, context)
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    cpus = float(os.cpu_count() or 1)
    backend_config = {
        "client_resources": {"num_cpus": min(cpus_per_client, cpus), "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "include_dashboard": False,
            "log_to_driver": verbose,
            "logging_level": logging.INFO if verbose else logging.ERROR,
        },
    }
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.WARNING)
    # Flower warns on every run that `run_simulation` is deprecated: a note for this
    # module's maintainers (see its docstring), which an operator cannot act on.
    quiet = _DropDeprecationNotice()
    flwr_logger.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=num_supernodes,
                backend_config=backend_config,
                verbose_logging=verbose,
            )
    finally:
        flwr_logger.setLevel(previous)
        flwr_logger.removeFilter(quiet)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise Pv4fadError("the simulated federation stopped before the coordinator finished")
    return outcome["result"]


class _DropDeprecationNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("DEPRECATED FEATURE" in message and "run_simulation" in message)


def wait_for_nodes(grid: Grid, expected: int, timeout_s: float = 120.0) -> list[int]:
    """Node ids once `expected` SuperNodes have connected (they register asynchronously)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise ProtocolError(
                f"only {len(nodes)} of {expected} parties connected within {timeout_s:.0f} s"
            )
        time.sleep(0.2)
