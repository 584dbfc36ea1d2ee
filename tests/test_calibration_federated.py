"""Federated LinC through Flower: owners score their own prompts and train locally; the
coordinator's FedAvg equals the same rounds computed in one process; ledgers; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from federation.errors import ProtocolError
from federation.transcript import read_ledger
from llm_modules.calibration.calibrators import ContextualCalibration, LinC
from llm_modules.calibration.data import Example
from llm_modules.calibration.federated import (
    CalibrationJob,
    FederatedLinCConfig,
    weighted_mean,
)
from llm_modules.calibration.prompts import PromptSpec
from llm_modules.calibration.scoring import LabelScorer
from llm_modules.models import TinyModelConfig, save_causal_lm, tiny_causal_lm, word_level_tokenizer
from server.calibration import fedavg, run_federated_linc

SPEC = PromptSpec("Review: {text} Sentiment: {label}",
                  {"neg": ("bad",), "pos": ("good", "fine")}, separator=" ")
TEXTS = [f"{a} {b}" for a in ("film", "plot", "acting") for b in ("x", "y", "z")]


def test_fedavg_through_flower_equals_the_same_rounds_in_one_process(tmp_path):
    tokenizer = word_level_tokenizer(["Review: Sentiment: good bad fine film plot acting x y z "
                                      "N/A [MASK]"])
    torch.manual_seed(0)
    path = save_causal_lm(tiny_causal_lm(TinyModelConfig(width=32), tokenizer, seed=4).eval(),
                          tokenizer, tmp_path / "model")
    scorer = LabelScorer(path)
    rng = np.random.default_rng(1)
    examples = [Example(t, "pos" if rng.random() < 0.5 else "neg") for t in TEXTS]
    jobs = []
    for shots in (0, 2):
        demos = tuple(examples[:shots])
        jobs.append(CalibrationJob(f"k{shots}", SPEC, demos, scorer.content_free(SPEC, demos)))
    owners = [{job.id: examples[i::2] for job in jobs} for i in range(2)]
    config = FederatedLinCConfig(str(path), lr=0.5, local_epochs=3, rounds=2, seed=7,
                                 transcript_dir=str(tmp_path / "ledger"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the simulated owners run
    try:
        federated = run_federated_linc(config, jobs, owners)
    finally:
        torch.set_num_threads(threads)
    for job in jobs:
        start = ContextualCalibration().fit(None, p_cf=job.p_cf)
        W, b = start.W, start.b
        for round_index in range(config.rounds):
            updates = []
            for share in owners:
                mine = share[job.id]
                probs = scorer.probabilities(SPEC, job.demonstrations, [e.text for e in mine])
                labels = np.array([SPEC.classes.index(e.label) for e in mine])
                local = LinC(config.lr, config.local_epochs, seed=7000 + round_index, W=W, b=b)
                local.train(probs, labels)
                updates.append(({job.id: (local.W, local.b)}, {job.id: len(mine)}))
            (W, b), = weighted_mean(updates)[0].values()
        got_W, got_b = federated[job.id]
        assert np.abs(got_W - W).max() < 1e-6 and np.abs(got_b - b).max() < 1e-6
        assert np.abs(got_W - start.W).max() > 1e-3  # the rounds moved it
    _check_ledgers(tmp_path / "ledger", rounds=2, owners=2)


def _check_ledgers(directory, rounds, owners):
    coordinator = list(read_ledger(directory / "coordinator.jsonl"))
    assert sorted(e.direction for e in coordinator) == (["received"] * rounds * owners
                                                       + ["sent"] * rounds * owners)
    files = sorted(directory.glob("owner-*.jsonl"))
    assert len(files) == owners
    for path in files:
        sent = [e for e in read_ledger(path) if e.direction == "sent"]
        assert [e.round for e in sent] == list(range(rounds))
        # W and b cross in the clear, and the ledger says so; texts and labels never cross.
        assert all(e.fields == {"weights": "plaintext", "status": "public"} for e in sent)


class _Reply:
    """Stand-in for an owner's reply (content and sender id only)."""

    def __init__(self, node: int, status: dict, weights: dict | None = None) -> None:
        from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

        records = {"status": ConfigRecord(status)}
        if weights is not None:
            records["weights"] = ArrayRecord({k: Array(v) for k, v in weights.items()})
        self.content = RecordDict(records)
        self.metadata = type("Meta", (), {"src_node_id": node})()

    def has_error(self) -> bool:
        return False


def test_fedavg_weights_by_counts_and_names_failures():
    one = _Reply(3, {"counts": json.dumps({"j": 1})}, {"j/W": np.eye(2), "j/b": np.zeros(2)})
    three = _Reply(4, {"counts": json.dumps({"j": 3})},
                   {"j/W": 5 * np.eye(2), "j/b": np.ones(2)})
    W, b = fedavg([one, three], 2)["j"]
    np.testing.assert_allclose(W, 4 * np.eye(2))
    np.testing.assert_allclose(b, [0.75, 0.75])
    with pytest.raises(ProtocolError, match="owner 9: examples file 'x' does not exist"):
        fedavg([one, _Reply(9, {"error": "examples file 'x' does not exist"})], 2)
    with pytest.raises(ProtocolError, match="expected 3 owners' replies, got 2"):
        fedavg([one, three], 3)
    empty = _Reply(5, {"counts": json.dumps({"j": 1, "k": 0})},
                   {"j/W": np.eye(2), "j/b": np.zeros(2)})
    with pytest.raises(ProtocolError, match="no owner holds examples for job\\(s\\) k"):
        fedavg([empty], 1)
