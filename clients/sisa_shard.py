"""A party hosting SISA shards, as a Flower ClientApp.

What it does: trains each shard it hosts on its own rows (slice by slice, keeping a
checkpoint after each slice on its own disk), forgets ids on request by retraining only from
the checkpoint before the first affected slice, and answers prediction queries with each
shard's P(y = 1). What it sends: per-shard sample counts and slice numbers (public
metadata) and, for a query the coordinator sent, the shard models' probabilities. Rows and
models never leave it.

Messages (the coordinator's phase names): `query.hello` -> client name; `train` -> train the
listed shards; `query.forget` -> forget ids in one shard (optionally with query rows: the
reply then carries the retrained shard's probabilities on them, scored while the model is
still in memory; the rows are not kept); `query.predict` -> probabilities.
Both sides record every message in their transcript ledger (`<root>/transcript.jsonl` here)
with the classes below. Prediction is the one plaintext exchange: the coordinator's query
rows go to the hosts and each shard's probabilities come back, because the coordinator is
the party that holds and answers with the ensemble.
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
from federation.transcript import PayloadClass, TranscriptLedger

PUBLIC, PLAINTEXT = PayloadClass.PUBLIC, PayloadClass.PLAINTEXT
# (request fields, reply fields) per phase. Row ids are routing metadata.
FIELD_CLASSES: dict[str, tuple[dict[str, PayloadClass], dict[str, PayloadClass]]] = {
    "hello": ({}, {"client": PUBLIC}),
    "train": ({"specs": PUBLIC, "slices": PUBLIC}, {"updates": PUBLIC}),
    "forget": (
        {"shard": PUBLIC, "ids": PUBLIC, "features": PLAINTEXT},
        {"update": PUBLIC, "proba": PLAINTEXT},
    ),
    "predict": ({"shards": PUBLIC, "features": PLAINTEXT}, {"shards": PUBLIC, "proba": PLAINTEXT}),
}
COORDINATOR = "coordinator"
ARRAY_FIELDS = ("features", "proba")  # carried as ArrayRecords, and only when sent


def fields_sent(classes: dict[str, PayloadClass], content: RecordDict) -> dict[str, PayloadClass]:
    """The field classes of what a message carries: an optional array field (a forget
    without query rows) is left out when absent, so the ledger shows no plaintext there."""
    return {
        name: kind for name, kind in classes.items()
        if name not in ARRAY_FIELDS or name in content.array_records
    }


def message_bytes(content: RecordDict) -> int:
    """Payload size: the JSON body plus any arrays."""
    size = sum(len(str(r["json"])) for r in content.config_records.values())
    return size + sum(r.count_bytes() for r in content.array_records.values())


def record_exchange(host: ShardHost, run: str, msg: Message, reply: RecordDict) -> None:
    """The host's ledger entries for one request and its reply."""
    phase = msg.metadata.message_type.removeprefix("query.")
    ledger = TranscriptLedger(host.name, run, host.root / "transcript.jsonl")
    exchange = (
        ("received", COORDINATOR, host.name, msg.content, FIELD_CLASSES[phase][0]),
        ("sent", host.name, COORDINATOR, reply, FIELD_CLASSES[phase][1]),
    )
    for direction, sender, receiver, body, classes in exchange:
        ledger.record(
            direction=direction, round=0, phase=phase, sender=sender, receiver=receiver,
            message_type=msg.metadata.message_type, nbytes=message_bytes(body),
            fields=fields_sent(classes, body),
        )


class ShardHost:
    """The shards one party hosts, under its own directory `root`."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = Path(root)

    def train(self, specs: list[ShardSpec], slices: list[list[list[int]]]) -> list[ShardUpdate]:
        pairs = zip(specs, slices, strict=True)
        return [ShardStore(self.root, spec.shard).train(spec, sl) for spec, sl in pairs]

    def forget(
        self, shard: int, ids: list[int], query: np.ndarray | None = None
    ) -> tuple[ShardUpdate, np.ndarray | None]:
        """Forget `ids` in `shard`; with `query`, also the retrained model's P(y = 1) on it."""
        store = ShardStore(self.root, shard)
        if query is None:
            return store.forget(ids), None
        return store.forget_and_score(ids, query)

    def predict(self, shards: list[int], features: np.ndarray) -> dict[int, np.ndarray]:
        return {s: ShardStore(self.root, s).predict_proba(features) for s in shards}


def make_client_app(hosts: Mapping[int, tuple[str, str]]) -> ClientApp:
    """The ClientApp; `hosts` maps a SuperNode's partition-id to (client name, directory),
    the per-party configuration a deployment would put in each node's config."""
    app = ClientApp()

    def host_of(context: Context) -> ShardHost:
        name, root = hosts[int(context.node_config["partition-id"])]
        return ShardHost(name, Path(root))

    def reply(
        msg: Message, context: Context, fields: dict[str, Any], arrays: ArrayRecord | None = None
    ) -> Message:
        content = RecordDict({"result": ConfigRecord({"json": json.dumps(fields)})})
        if arrays is not None:
            content["proba"] = arrays
        record_exchange(host_of(context), str(context.run_id), msg, content)
        return Message(content, reply_to=msg)

    def request(msg: Message) -> dict[str, Any]:
        return json.loads(str(msg.content.config_records["request"]["json"]))

    @app.query("hello")
    def hello(msg: Message, context: Context) -> Message:
        return reply(msg, context, {"client": host_of(context).name})

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        body = request(msg)
        specs = [ShardSpec(**s) for s in body["specs"]]
        updates = host_of(context).train(specs, body["slices"])
        return reply(msg, context, {"updates": [asdict(u) for u in updates]})

    @app.query("forget")
    def forget(msg: Message, context: Context) -> Message:
        body = request(msg)
        query = None
        if "features" in msg.content.array_records:
            query = msg.content.array_records["features"].to_numpy_ndarrays()[0]
        update, proba = host_of(context).forget(int(body["shard"]), list(body["ids"]), query)
        arrays = None if proba is None else ArrayRecord(numpy_ndarrays=[proba])
        return reply(msg, context, {"update": asdict(update)}, arrays)

    @app.query("predict")
    def predict(msg: Message, context: Context) -> Message:
        shards = list(request(msg)["shards"])
        features = msg.content.array_records["features"].to_numpy_ndarrays()[0]
        proba = host_of(context).predict(shards, features)
        arrays = ArrayRecord(numpy_ndarrays=[proba[s] for s in shards])
        return reply(msg, context, {"shards": shards}, arrays)

    return app
