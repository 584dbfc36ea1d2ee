"""SISA over Flower: the coordinator's transport as Flower messages, and a runner that
simulates the hosts as SuperNodes (hosts listed as `down` are simply not started)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.server import Grid

from clients.sisa_shard import (
    COORDINATOR,
    FIELD_CLASSES,
    fields_sent,
    make_client_app,
    message_bytes,
)
from federation.errors import ProtocolError, Pv4fadError
from federation.simulation import run_federation, wait_for_nodes
from federation.sisa.shard import ShardSpec, ShardUpdate
from federation.transcript import TranscriptLedger
from server.sisa import LocalTransport, ShardProba, SisaCoordinator, client_name

T = TypeVar("T")


class FlowerTransport:
    """Reaches shard hosts through the Flower grid; hosts introduce themselves by name."""

    def __init__(
        self, grid: Grid, expected: int, ledger: TranscriptLedger, timeout_s: float = 600.0
    ) -> None:
        self.grid = grid
        self.ledger = ledger
        self.timeout_s = timeout_s
        nodes = wait_for_nodes(grid, expected)
        self.nodes: dict[str, int] = {}
        self.names: dict[int, str] = {}
        for node in nodes:
            name = str(self._send(node, "query.hello", {})[0]["client"])
            self.nodes[name] = node
            self.names[node] = name

    def _send(
        self, node: int, message_type: str, body: dict[str, Any], arrays: ArrayRecord | None = None
    ) -> tuple[dict[str, Any], Message]:
        content = RecordDict({"request": ConfigRecord({"json": json.dumps(body)})})
        if arrays is not None:
            content["features"] = arrays
        message = Message(content, dst_node_id=node, message_type=message_type)
        replies = list(self.grid.send_and_receive([message], timeout=self.timeout_s))
        if not replies:
            raise ProtocolError(f"node {node} did not answer {message_type} in {self.timeout_s} s")
        reply = replies[0]
        phase = message_type.removeprefix("query.")
        host = self.names.get(node, f"node {node}")
        self._record("sent", phase, message_type, COORDINATOR, host, content)
        if reply.has_error():
            raise ProtocolError(f"{host} failed {message_type}: {reply.error.reason}")
        self._record("received", phase, message_type, host, COORDINATOR, reply.content)
        result = json.loads(str(reply.content.config_records["result"]["json"]))
        return result, reply

    def _record(
        self, direction: str, phase: str, message_type: str, sender: str, receiver: str,
        content: RecordDict,
    ) -> None:
        classes = FIELD_CLASSES[phase][0 if direction == "sent" else 1]
        self.ledger.record(
            direction=direction, round=0, phase=phase, sender=sender, receiver=receiver,
            message_type=message_type, nbytes=message_bytes(content),
            fields=fields_sent(classes, content),
        )

    def _node(self, client: str) -> int:
        if client not in self.nodes:
            raise ProtocolError(f"shard host {client} is not connected")
        return self.nodes[client]

    def online(self) -> set[str]:
        return set(self.nodes)

    def train(
        self, client: str, specs: list[ShardSpec], slices: list[list[list[int]]]
    ) -> list[ShardUpdate]:
        body = {"specs": [asdict(s) for s in specs], "slices": slices}
        result, _ = self._send(self._node(client), "train", body)
        return [ShardUpdate(**u) for u in result["updates"]]

    def forget(
        self, client: str, shard: int, ids: list[int], query: np.ndarray | None = None
    ) -> tuple[ShardUpdate, np.ndarray | None]:
        body = {"shard": shard, "ids": ids}
        arrays = None if query is None else ArrayRecord(
            numpy_ndarrays=[np.ascontiguousarray(query)]
        )
        result, reply = self._send(self._node(client), "query.forget", body, arrays)
        proba = None
        if "proba" in reply.content.array_records:
            proba = reply.content.array_records["proba"].to_numpy_ndarrays()[0]
        return ShardUpdate(**result["update"]), proba

    def predict(self, client: str, shards: list[int], features: np.ndarray) -> ShardProba:
        arrays = ArrayRecord(numpy_ndarrays=[np.ascontiguousarray(features)])
        _, reply = self._send(self._node(client), "query.predict", {"shards": shards}, arrays)
        proba = reply.content.array_records["proba"].to_numpy_ndarrays()
        return dict(zip(shards, proba, strict=True))


def run_sisa_federation(
    run_dir: Path,
    clients: int,
    action: Callable[[SisaCoordinator], T],
    down: Sequence[str] = (),
    verbose: bool = False,
) -> T:
    """Simulate the hosts client00.. (except `down`) and run `action` on the coordinator."""
    run_dir = Path(run_dir).resolve()
    names = [client_name(i) for i in range(clients)]
    unknown = sorted(set(down) - set(names))
    if unknown:
        raise Pv4fadError(f"--down names unknown hosts {unknown}: expected among {names}")
    online = [n for n in names if n not in down]
    if not online:
        # No SuperNode to start; the coordinator still runs so that requests are queued.
        return action(SisaCoordinator(run_dir, LocalTransport(run_dir, clients, names)))
    hosts = {pid: (name, str(run_dir / "clients" / name)) for pid, name in enumerate(online)}

    def server_main(grid: Grid, context: Any) -> T:
        path = run_dir / "coordinator" / "transcript.jsonl"
        ledger = TranscriptLedger(COORDINATOR, str(context.run_id), path)
        return action(SisaCoordinator(run_dir, FlowerTransport(grid, len(online), ledger)))

    return run_federation(server_main, make_client_app(hosts), len(online), verbose=verbose)
