"""Federated SPUNGE (one Flower worker per attribute value) gives the local SPUNGE model."""

from __future__ import annotations

import torch

from federation.transcript import read_ledger
from llm_modules.models import TinyModelConfig, load_causal_lm
from llm_modules.unlearning.benchmark import BenchmarkConfig, build_benchmark
from llm_modules.unlearning.spunge import spunge
from llm_modules.unlearning.trainer import UnlearnConfig
from server.unlearning import FederatedSpungeConfig, run_federated_spunge

SMALL = BenchmarkConfig(
    n_entities=9, n_forget=3, n_holdout=1, model=TinyModelConfig(width=32), train_epochs=40,
    seed=2,
)


def test_federated_spunge_equals_local_spunge(tmp_path):
    # Workers run single-threaded (one CPU each); so does the local run, for bit-equality.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paths = build_benchmark(SMALL, tmp_path)
        splits = paths.load_splits()
        config = UnlearnConfig(method="npo", epochs=3, lr=5e-4, seed=3)
        federated_config = FederatedSpungeConfig(
            str(paths.target), config, wagle_ratio=0.9, transcript_dir=str(tmp_path / "ledger")
        )
        federated, values = run_federated_spunge(
            paths.target, splits["forget"], splits["retain"], "field", federated_config
        )
        local, tokenizer = load_causal_lm(paths.target)
        start = {n: p.detach().clone() for n, p in local.named_parameters()}
        spunge(local, tokenizer, splits["forget"], splits["retain"], config, "field", "ties",
               mask_for=lambda worker, subset: _wagle(worker, tokenizer, subset, splits))
    finally:
        torch.set_num_threads(threads)
    assert values == ["arts", "commerce", "science"]
    moved = False
    for (name, mine), theirs in zip(local.named_parameters(), federated.parameters(), strict=True):
        assert torch.equal(mine, theirs), name
        moved |= not torch.equal(mine, start[name])
    assert moved
    _check_transcripts(tmp_path / "ledger")


def _check_transcripts(directory):
    coordinator = list(read_ledger(directory / "coordinator.jsonl"))
    assert sorted(e.direction for e in coordinator) == ["received"] * 3 + ["sent"] * 3
    workers = sorted(directory.glob("worker-*.jsonl"))
    assert len(workers) == 3
    for path in workers:
        sent = [e for e in read_ledger(path) if e.direction == "sent"]
        assert len(sent) == 1 and sent[0].receiver == "coordinator"
        # The trimmed task vector crosses in the clear, and the ledger says so.
        assert sent[0].fields == {"task_vector": "plaintext", "status": "public"}
        assert sent[0].nbytes > 0


def _wagle(worker, tokenizer, subset, splits):
    from llm_modules.unlearning.wagle import build_mask

    return build_mask("wagle", worker, tokenizer, subset, splits["retain"], 0.9, seed=3)


class _Reply:
    """Stand-in for a worker's reply message (content and sender id only)."""

    def __init__(self, node: int, status: dict, vector: dict | None = None) -> None:
        from flwr.app import ArrayRecord, ConfigRecord, RecordDict

        records = {"status": ConfigRecord(status)}
        if vector is not None:
            records["task_vector"] = ArrayRecord(torch_state_dict=vector)
        self.content = RecordDict(records)
        self.metadata = type("Meta", (), {"src_node_id": node})()

    def has_error(self) -> bool:
        return False


def test_coordinator_names_a_failed_worker_and_a_missing_subset():
    import pytest

    from federation.errors import ProtocolError
    from server.unlearning import _collect

    ok = _Reply(7, {"attribute_value": "arts", "facts": 4}, {"w": torch.zeros(2)})
    failed = _Reply(9, {"error": "forget file 'x' does not exist"})
    with pytest.raises(ProtocolError, match="worker 9: forget file 'x' does not exist"):
        _collect([ok, failed], 2)
    with pytest.raises(ProtocolError, match="expected 2 distinct attribute subsets, got 1"):
        _collect([ok], 2)
    assert set(_collect([ok], 1)) == {"arts"}
