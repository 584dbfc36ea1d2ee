"""Federated post-training (one Flower data owner) gives exactly the local run, and only
metrics and a digest reach the coordinator."""

from __future__ import annotations

import pytest
import torch

from federation.errors import ProtocolError
from federation.transcript import read_ledger
from llm_modules.alignment.post_training import PostTrainConfig, model_digest
from llm_modules.alignment.post_training_run import PostTrainingData, run_post_training
from llm_modules.alignment.post_training_tasks import TaskConfig, generate_task
from llm_modules.models import (
    TinyModelConfig,
    load_causal_lm,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)
from server.post_training import (
    FederatedPostTrainingConfig,
    collect,
    run_federated_post_training,
)


def test_federated_post_training_equals_the_local_run(tmp_path):
    task = generate_task(TaskConfig(n_objects=10, seed=3))
    tokenizer = word_level_tokenizer(task.texts())
    model = tiny_causal_lm(TinyModelConfig(width=32, max_positions=48), tokenizer, seed=3)
    start = save_causal_lm(model, tokenizer, tmp_path / "start")
    data = PostTrainingData(task.sft_train, task.preference_train, task.sft_eval,
                            task.preference_eval)
    config = PostTrainConfig(method="maxright", lam=0.5, steps=12, lr=3e-3, seed=2)
    federated_config = FederatedPostTrainingConfig(
        str(start), config, transcript_dir=str(tmp_path / "ledger"))
    # The owner runs single-threaded (one CPU); so does the local run, for bit-equality.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learned = run_federated_post_training(data, federated_config, str(tmp_path / "owner"))
        local = run_post_training(start, data, config)
    finally:
        torch.set_num_threads(threads)
    assert learned["digest"] == local["digest"]
    assert learned["updates"] == local["updates"]
    assert learned["train"] == pytest.approx(local["train"], abs=0)
    assert learned["held_out"] == pytest.approx(local["held_out"], abs=0)
    kept, _ = load_causal_lm(tmp_path / "owner")  # the model stayed with the data owner
    assert model_digest(kept) == learned["digest"]

    coordinator = list(read_ledger(tmp_path / "ledger" / "coordinator.jsonl"))
    assert sorted(e.direction for e in coordinator) == ["received", "sent"]
    (owner_ledger,) = sorted((tmp_path / "ledger").glob("owner-*.jsonl"))
    sent = [e for e in read_ledger(owner_ledger) if e.direction == "sent"]
    assert len(sent) == 1 and sent[0].receiver == "coordinator"
    # Only metrics (in the clear, and the ledger says so) and the digest leave the owner.
    assert sent[0].fields == {"metrics": "plaintext", "status": "public"}
    assert sent[0].nbytes == 0


class _Reply:
    """Stand-in for the owner's reply (content and sender id only)."""

    def __init__(self, node: int, status: dict, metrics: dict | None = None) -> None:
        from flwr.app import ConfigRecord, MetricRecord, RecordDict

        records = {"status": ConfigRecord(status)}
        if metrics is not None:
            records["metrics"] = MetricRecord(metrics)
        self.content = RecordDict(records)
        self.metadata = type("Meta", (), {"src_node_id": node})()

    def has_error(self) -> bool:
        return False


def test_coordinator_names_a_failed_or_missing_owner():
    failed = _Reply(7, {"error": "SFT file 'x' does not exist"})
    with pytest.raises(ProtocolError, match="data owner 7: SFT file 'x' does not exist"):
        collect([failed])
    with pytest.raises(ProtocolError, match="expected one reply from the data owner, got 0"):
        collect([])
    ok = _Reply(3, {"digest": "ab", "method": "alright"}, {"seconds": 1.5})
    assert collect([ok]) == {"method": "alright", "digest": "ab", "metrics": {"seconds": 1.5}}
