"""The one place that decides how a federation is simulated on one machine.

Choice: Flower's Simulation Runtime engine, in this process, with the Ray backend. It
runs the very ServerApp and ClientApp objects a deployment runs, needs no SuperLink
process and no per-run environment, and keeps `pv4fad simulate` one command whose
coordinator can hand back Python objects (its reports) and stream progress to this
terminal.

Flower 1.42 has no public, non-deprecated way to do that in one process: its public
wrapper `flwr.simulation.run_simulation` is deprecated ("use `flwr run`"), and what
`flwr run` uses against a local simulation SuperLink (`run_simulation_process`) needs
that SuperLink. Both end in the same engine, `flwr.simulation.run_simulation.
_run_simulation`; this module calls the engine directly, as Flower's own process-isolated
runtime does, so no deprecated API is on the default path. It is an internal function
of the pinned Flower (pyproject.toml): `_engine` checks its signature, so an upgrade that
changes it fails here with one line rather than somewhere inside a run. `flwr run .`
against a local SuperLink runs the same apps (deploy/run_flwr_local.sh).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.server import Grid, ServerApp

from federation.errors import ProtocolError, Pv4fadError

ServerMain = Callable[[Grid, Context], Any]

# The engine's keyword arguments this module passes (checked against the installed Flower).
_ENGINE_ARGS = ("num_supernodes", "exit_event", "client_app", "server_app", "backend_name",
                "backend_config", "verbose_logging")


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
    from flwr.supercore.telemetry import EventType

    engine = _engine()
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
    try:
        engine(
            num_supernodes=num_supernodes,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app,
            server_app=server_app,
            backend_name="ray",
            backend_config=backend_config,
            verbose_logging=verbose,
        )
    finally:
        flwr_logger.setLevel(previous)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise Pv4fadError("the simulated federation stopped before the coordinator finished")
    return outcome["result"]


def _engine() -> Callable[..., Any]:
    """Flower's Simulation Runtime engine, once its signature is the one this module
    was written against."""
    import importlib
    import inspect

    import flwr

    # The module (the package's attribute of that name is the deprecated function).
    module = importlib.import_module("flwr.simulation.run_simulation")
    engine = getattr(module, "_run_simulation", None)
    params = inspect.signature(engine).parameters if callable(engine) else {}
    missing = [name for name in _ENGINE_ARGS if name not in params]
    if missing:
        raise Pv4fadError(
            f"Flower {getattr(flwr, '__version__', '?')} has no simulation engine "
            f"flwr.simulation.run_simulation._run_simulation({', '.join(_ENGINE_ARGS)}); "
            "federation/simulation.py is written for the Flower pinned in pyproject.toml")
    return engine


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
