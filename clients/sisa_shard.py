"""A party hosting SISA shards, as a Flower ClientApp.

What it does: trains each shard it hosts on its own rows (slice by slice, keeping a
checkpoint after each slice on its own disk), forgets ids on request by retraining only from
the checkpoint before the first affected slice, and answers prediction queries with each
shard's P(y = 1). What it sends: per-shard sample counts and slice numbers (public
metadata) and, for a query the coordinator sent, the shard models' probabilities. Rows and
models never leave it.

Messages (the coordinator's phase names): `query.hello` -> client name; `train` -> train the
listed shards; `query.forget` -> forget ids in one shard; `query.predict` -> probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from federation.sisa.shard import ShardSpec, ShardStore, ShardUpdate


class ShardHost:
    """The shards one party hosts, under its own directory `root`."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = Path(root)

    def train(self, specs: list[ShardSpec], slices: list[list[list[int]]]) -> list[ShardUpdate]:
        pairs = zip(specs, slices, strict=True)
        return [ShardStore(self.root, spec.shard).train(spec, sl) for spec, sl in pairs]

    def forget(self, shard: int, ids: list[int]) -> ShardUpdate:
        return ShardStore(self.root, shard).forget(ids)

    def predict(self, shards: list[int], features: np.ndarray) -> dict[int, np.ndarray]:
        return {s: ShardStore(self.root, s).predict_proba(features) for s in shards}


def make_client_app(hosts: Mapping[int, tuple[str, str]]) -> ClientApp:
    """The ClientApp; `hosts` maps a SuperNode's partition-id to (client name, directory),
    the per-party configuration a deployment would put in each node's config."""
    app = ClientApp()

    def host_of(context: Context) -> ShardHost:
        name, root = hosts[int(context.node_config["partition-id"])]
        return ShardHost(name, Path(root))

    def reply(msg: Message, fields: dict[str, Any], arrays: ArrayRecord | None = None) -> Message:
        content = RecordDict({"result": ConfigRecord({"json": json.dumps(fields)})})
        if arrays is not None:
            content["proba"] = arrays
        return Message(content, reply_to=msg)

    def request(msg: Message) -> dict[str, Any]:
        return json.loads(str(msg.content.config_records["request"]["json"]))

    @app.query("hello")
    def hello(msg: Message, context: Context) -> Message:
        return reply(msg, {"client": host_of(context).name})

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        body = request(msg)
        specs = [ShardSpec(**s) for s in body["specs"]]
        updates = host_of(context).train(specs, body["slices"])
        return reply(msg, {"updates": [asdict(u) for u in updates]})

    @app.query("forget")
    def forget(msg: Message, context: Context) -> Message:
        body = request(msg)
        update = host_of(context).forget(int(body["shard"]), list(body["ids"]))
        return reply(msg, {"update": asdict(update)})

    @app.query("predict")
    def predict(msg: Message, context: Context) -> Message:
        shards = list(request(msg)["shards"])
        features = msg.content.array_records["features"].to_numpy_ndarrays()[0]
        proba = host_of(context).predict(shards, features)
        arrays = ArrayRecord(numpy_ndarrays=[proba[s] for s in shards])
        return reply(msg, {"shards": shards}, arrays)

    return app
