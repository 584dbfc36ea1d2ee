"""Coordinator of federated post-training: one data owner post-trains a public model on its
own SFT and preference data; the coordinator starts the job and receives only metrics and
the trained model's digest.

Protocol:
1. Wait for the data owner; send it `query.post_train` with the settings: the trainer's
   hyper-parameters (method, lambda, steps, ...), the path of the public starting model
   and of the reference model, LoRA rank and alpha.
2. The owner trains with the same trainer as `pv4fad llm post-train`, keeps the model,
   and replies with its metrics and the SHA-256 digest of the trained weights.
3. The coordinator checks the reply and returns the metrics and the digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from clients.llm_worker import party_ledger
from clients.post_training_owner import (
    POST_TRAIN,
    OwnerData,
    build_data_owner_app,
    record_message,
    settings_record,
)
from federation.errors import ProtocolError
from federation.simulation import ServerMain, run_federation, wait_for_nodes
from llm_modules.alignment.post_training import PostTrainConfig
from llm_modules.alignment.post_training_run import PostTrainingData


@dataclass(frozen=True)
class FederatedPostTrainingConfig:
    """What the coordinator asks the data owner to run."""

    model_path: str
    train: PostTrainConfig
    reference_path: str = ""  # "": the starting model is the reference
    lora_rank: int = 0  # 0: train every weight
    lora_alpha: float = 16.0
    transcript_dir: str = ""  # where each party writes its ledger ("": in memory only)

    def settings(self) -> ConfigRecord:
        return ConfigRecord({
            **settings_record(self.train), "model_path": self.model_path,
            "reference_path": self.reference_path, "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha, "transcript_dir": self.transcript_dir,
        })


def post_training_coordinator(config: FederatedPostTrainingConfig) -> ServerMain:
    """The coordinator's main: returns the owner's metrics and model digest."""

    def main(grid: Grid, context: Context) -> dict:
        (node,) = wait_for_nodes(grid, 1)
        ledger = party_ledger("coordinator", context.run_id, config.transcript_dir)
        message = Message(RecordDict({"settings": config.settings()}), dst_node_id=node,
                          message_type=f"query.{POST_TRAIN}")
        record_message(ledger, "sent", message, sender="coordinator", receiver=f"owner:{node}")
        replies = list(grid.send_and_receive([message]))
        for reply in replies:
            record_message(ledger, "received", reply,
                           sender=f"owner:{reply.metadata.src_node_id}", receiver="coordinator")
        return collect(replies)

    return main


def collect(replies: Sequence[Message]) -> dict:
    """The owner's metrics and digest; a failed or silent owner stops the run."""
    if len(replies) != 1:
        raise ProtocolError(f"expected one reply from the data owner, got {len(replies)}")
    (reply,) = replies
    if reply.has_error():
        raise ProtocolError(f"data owner {reply.metadata.src_node_id} failed: "
                            f"{reply.error.reason}")
    status = reply.content["status"]
    if "error" in status:
        raise ProtocolError(f"data owner {reply.metadata.src_node_id}: {status['error']}")
    return {"method": str(status["method"]), "digest": str(status["digest"]),
            "metrics": dict(reply.content["metrics"])}


def run_federated_post_training(
    data: PostTrainingData, config: FederatedPostTrainingConfig, out_dir: str = ""
) -> dict:
    """Simulate the coordinator and one data owner holding `data` (keeping its model in
    `out_dir`); returns what the coordinator learned, in the shape of a local run's result
    where it can (held-out losses only if the owner has held-out sets)."""
    owner = {0: OwnerData(data, out_dir)}
    learned = run_federation(post_training_coordinator(config), build_data_owner_app(owner), 1)
    metrics = learned["metrics"]
    held_out = None
    if "held_out_f_sft" in metrics:
        held_out = {"f_sft": metrics["held_out_f_sft"], "f_dpo": metrics["held_out_f_dpo"]}
    return {
        "method": learned["method"], "lambda": config.train.lam, "steps": config.train.steps,
        "train": {"f_sft": metrics["train_f_sft"], "f_dpo": metrics["train_f_dpo"]},
        "held_out": held_out, "seconds": metrics["seconds"], "digest": learned["digest"],
        "updates": {"sft": int(metrics["updates_sft"]), "dpo": int(metrics["updates_dpo"])},
        "lora_rank": config.lora_rank, "out": out_dir or None, "federated": True,
    }
