"""Coordinator of federated SPUNGE: each worker unlearns its own attribute subset of the
forget set from the same start; the coordinator merges their task vectors by TIES.

Protocol:
1. Wait for the workers; send each `query.unlearn_subset` with the starting weights and
   the unlearning settings (method, epochs, lr, seed, mask, TIES keep fraction).
2. Each worker replies with its locally trimmed task vector and its attribute value.
3. Elect each entry's sign and take the disjoint mean (TIES steps 2-3) over the replies,
   in sorted attribute order, and return start + scale * merged.
For the same seeds this is exactly local `spunge(..., merge="ties")`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from transformers import PreTrainedModel

from clients.llm_worker import (
    UNLEARN_SUBSET,
    WorkerData,
    build_llm_worker_app,
    party_ledger,
    record_message,
)
from federation.errors import ProtocolError
from federation.simulation import ServerMain, run_federation, wait_for_nodes
from llm_modules.models import load_causal_lm
from llm_modules.unlearning.data import Fact
from llm_modules.unlearning.spunge import (
    TaskVector,
    apply_task_vector,
    elect_and_merge,
    parameter_state,
    split_by_attribute,
)
from llm_modules.unlearning.trainer import UnlearnConfig


@dataclass(frozen=True)
class FederatedSpungeConfig:
    """What the coordinator tells every worker, and how it merges their answers."""

    model_path: str
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    keep: float = 0.2  # TIES trim: fraction of each task vector's entries kept
    scale: float = 1.0  # lambda in start + lambda * merged
    wagle_ratio: float = 1.0  # < 1 masks each worker's training to that top fraction
    mask_kind: str = "wagle"
    transcript_dir: str = ""  # where each party writes its ledger ("": in memory only)

    def settings(self) -> ConfigRecord:
        u = self.unlearn
        return ConfigRecord({
            "model_path": self.model_path, "method": u.method, "epochs": u.epochs,
            "lr": u.lr, "batch_size": u.batch_size, "beta": u.beta or 0.0, "seed": u.seed,
            "keep": self.keep, "wagle_ratio": self.wagle_ratio, "mask_kind": self.mask_kind,
            "transcript_dir": self.transcript_dir,
        })


def spunge_coordinator(config: FederatedSpungeConfig, num_workers: int) -> ServerMain:
    """The coordinator's main: returns (starting weights, merged task vector, values)."""

    def main(grid: Grid, context: Context) -> tuple[TaskVector, TaskVector, list[str]]:
        nodes = wait_for_nodes(grid, num_workers)
        model, _ = load_causal_lm(config.model_path)
        start = parameter_state(model)
        ledger = party_ledger("coordinator", context.run_id, config.transcript_dir)
        messages = [
            Message(
                RecordDict({"start": ArrayRecord(torch_state_dict=start),
                            "settings": config.settings()}),
                dst_node_id=node,
                message_type=f"query.{UNLEARN_SUBSET}",
            )
            for node in nodes
        ]
        for message in messages:
            record_message(ledger, "sent", message, sender="coordinator",
                           receiver=f"worker:{message.metadata.dst_node_id}")
        replies = list(grid.send_and_receive(messages))
        for reply in replies:
            record_message(ledger, "received", reply, sender=f"worker:{reply.metadata.src_node_id}",
                           receiver="coordinator")
        vectors = _collect(replies, num_workers)
        merged = elect_and_merge([vectors[value] for value in sorted(vectors)])
        return start, merged, sorted(vectors)

    return main


def _collect(replies: Sequence[Message], expected: int) -> dict[str, TaskVector]:
    """Trimmed task vectors keyed by attribute value; a failed worker stops the run."""
    vectors = {}
    for reply in replies:
        if reply.has_error():
            raise ProtocolError(f"worker {reply.metadata.src_node_id} failed: {reply.error.reason}")
        status = reply.content["status"]
        if "error" in status:
            raise ProtocolError(f"worker {reply.metadata.src_node_id}: {status['error']}")
        vector = reply.content["task_vector"].to_torch_state_dict()
        vectors[str(status["attribute_value"])] = {k: v.float() for k, v in vector.items()}
    if len(vectors) != expected:
        raise ProtocolError(f"expected {expected} distinct attribute subsets, got {len(vectors)}")
    return vectors


def run_federated_spunge(
    model_path: str | Path,
    forget: Sequence[Fact],
    retain: Sequence[Fact],
    attribute: str,
    config: FederatedSpungeConfig,
) -> tuple[PreTrainedModel, list[str]]:
    """Simulate one worker per attribute value; returns the merged model and the values."""
    subsets = split_by_attribute(forget, attribute)
    layout = {
        i: WorkerData(value, subset, list(retain))
        for i, (value, subset) in enumerate(subsets.items())
    }
    start, merged, values = run_federation(
        spunge_coordinator(config, len(layout)), build_llm_worker_app(layout), len(layout)
    )
    model, _ = load_causal_lm(model_path)
    return apply_task_vector(model, start, merged, config.scale), values
