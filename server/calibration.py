"""Coordinator of federated LinC: data owners fit W and b on their own labelled prompts and
the coordinator averages them (FedAvg, weighted by each owner's example count).

Protocol, for a batch of calibration jobs (a prompt template with its demonstrations):
1. The coordinator computes each job's content-free probabilities p_cf (they need no
   private data) and starts at contextual calibration: W = diag(p_cf)^-1, b = 0.
2. Each round it sends every owner `query.fit_linc` with the current W and b of every job
   and the settings (model, prompts, demonstrations and lr per job, local epochs, seed,
   round).
3. Each owner runs `local_epochs` of LinC's SGD on its own examples of each job and
   replies with its W, b and example counts.
4. The coordinator sets each job's W and b to the count-weighted mean of the replies.
After `rounds` rounds it returns the final W and b per job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from clients.calibration_owner import (
    FIT_LINC,
    OwnerData,
    build_calibration_owner_app,
    record_message,
)
from clients.llm_worker import party_ledger
from federation.errors import ProtocolError
from federation.simulation import ServerMain, run_federation, wait_for_nodes
from llm_modules.calibration.calibrators import ContextualCalibration
from llm_modules.calibration.data import Example
from llm_modules.calibration.federated import (
    CalibrationJob,
    FederatedLinCConfig,
    Weights,
    weighted_mean,
)


def _settings(config: FederatedLinCConfig, jobs: Sequence[CalibrationJob],
              round_index: int) -> ConfigRecord:
    return ConfigRecord({
        "model_path": config.model_path, "cache_path": config.cache_path,
        "local_epochs": config.local_epochs, "seed": config.seed, "round": round_index,
        "jobs": json.dumps([job.to_json() for job in jobs]),
        "transcript_dir": config.transcript_dir,
    })


def linc_coordinator(
    config: FederatedLinCConfig, jobs: Sequence[CalibrationJob], num_owners: int
) -> ServerMain:
    """The coordinator's main: returns the FedAvg W and b of every job."""

    def main(grid: Grid, context: Context) -> Weights:
        nodes = wait_for_nodes(grid, num_owners)
        ledger = party_ledger("coordinator", context.run_id, config.transcript_dir)
        weights = {}
        for job in jobs:
            start = ContextualCalibration().fit(None, p_cf=job.p_cf)
            weights[job.id] = (start.W, start.b)
        for round_index in range(config.rounds):
            payload = ArrayRecord({f"{job_id}/{name}": Array(value)
                                   for job_id, (W, b) in weights.items()
                                   for name, value in (("W", W), ("b", b))})
            messages = [
                Message(RecordDict({"weights": payload,
                                    "settings": _settings(config, jobs, round_index)}),
                        dst_node_id=node, message_type=f"query.{FIT_LINC}")
                for node in nodes
            ]
            for message in messages:
                record_message(ledger, "sent", message, round_index, sender="coordinator",
                               receiver=f"owner:{message.metadata.dst_node_id}")
            replies = list(grid.send_and_receive(messages))
            for reply in replies:
                record_message(ledger, "received", reply, round_index,
                               sender=f"owner:{reply.metadata.src_node_id}",
                               receiver="coordinator")
            weights = fedavg(replies, num_owners)
        return weights

    return main


def fedavg(replies: Sequence[Message], expected: int) -> Weights:
    """Count-weighted mean of the owners' W and b per job; a failed owner stops the run."""
    if len(replies) != expected:
        raise ProtocolError(f"expected {expected} owners' replies, got {len(replies)}")
    updates = []
    for reply in replies:
        owner = reply.metadata.src_node_id
        if reply.has_error():
            raise ProtocolError(f"owner {owner} failed: {reply.error.reason}")
        status = reply.content["status"]
        if "error" in status:
            raise ProtocolError(f"owner {owner}: {status['error']}")
        counts = json.loads(str(status["counts"]))
        arrays = reply.content["weights"]
        weights = {job_id: (arrays[f"{job_id}/W"].numpy(), arrays[f"{job_id}/b"].numpy())
                   for job_id, count in counts.items() if count}
        updates.append((weights, counts))
    merged, empty = weighted_mean(updates)
    if empty:
        raise ProtocolError(f"no owner holds examples for job(s) {', '.join(empty)}")
    return merged


def run_federated_linc(
    config: FederatedLinCConfig,
    jobs: Sequence[CalibrationJob],
    owners: Sequence[Mapping[str, Sequence[Example]]],
) -> Weights:
    """Simulate one owner per entry of `owners` (job id -> its examples); FedAvg W, b."""
    layout = {i: OwnerData(examples) for i, examples in enumerate(owners)}
    return run_federation(
        linc_coordinator(config, jobs, len(layout)),
        build_calibration_owner_app(layout),
        len(layout),
    )
