"""Federated LinC through Flower: owners score their own prompts and train locally; the
coordinator's FedAvg equals the same rounds computed in one process; ledgers; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clients.calibration_owner import OwnerData, local_round
from federation.errors import ProtocolError
from federation.transcript import read_ledger
from llm_modules.calibration.cache import ProbabilityCache
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


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    tokenizer = word_level_tokenizer(["Review: Sentiment: good bad fine film plot acting x y z "
                                      "N/A [MASK]"])
    model = tiny_causal_lm(TinyModelConfig(width=32), tokenizer, seed=4).eval()
    return save_causal_lm(model, tokenizer, tmp_path_factory.mktemp("fed") / "model")


def _jobs(scorer):
    rng = np.random.default_rng(1)
    examples = [Example(t, "pos" if rng.random() < 0.5 else "neg") for t in TEXTS]
    jobs = []
    for shots in (0, 2):
        demos = tuple(examples[:shots])
        jobs.append(CalibrationJob(f"k{shots}", SPEC, demos, scorer.content_free(SPEC, demos),
                                   lr=0.5))
    return jobs, [{job.id: examples[i::2] for job in jobs} for i in range(2)]


def test_an_owner_scores_its_own_examples_and_trains_from_the_coordinator_weights(model_path):
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    scorer = LabelScorer(model_path)
    jobs, owners = _jobs(scorer)
    start = ContextualCalibration().fit(None, p_cf=jobs[1].p_cf)
    settings = {"model_path": str(model_path), "cache_path": "", "local_epochs": 3,
                "seed": 2, "round": 1,
                "jobs": json.dumps([job.to_json() for job in jobs[1:]])}
    content = RecordDict({"settings": ConfigRecord(settings), "weights": ArrayRecord(
        {"k2/W": Array(start.W), "k2/b": Array(start.b)})})
    reply = local_round(content, OwnerData({"k2": owners[0]["k2"], "k9": owners[1]["k2"]}))
    mine = owners[0]["k2"]
    probs = scorer.probabilities(SPEC, jobs[1].demonstrations, [e.text for e in mine])
    expected = LinC(0.5, 3, seed=2001, W=start.W, b=start.b).train(
        probs, np.array([SPEC.classes.index(e.label) for e in mine]))
    assert json.loads(reply["status"]["counts"]) == {"k2": len(mine)}
    np.testing.assert_allclose(reply["weights"]["k2/W"].numpy(), expected.W, atol=1e-9)
    np.testing.assert_allclose(reply["weights"]["k2/b"].numpy(), expected.b, atol=1e-9)


def test_fedavg_through_flower_equals_the_same_rounds_in_one_process(model_path, tmp_path):
    # The owners read label probabilities from the shared cache, as on one machine.
    scorer = LabelScorer(model_path, ProbabilityCache(tmp_path / "probs.sqlite"))
    jobs, owners = _jobs(scorer)
    for job in jobs:
        scorer.probabilities(SPEC, job.demonstrations, TEXTS)
    config = FederatedLinCConfig(str(model_path), local_epochs=3, rounds=2, seed=7,
                                 cache_path=str(tmp_path / "probs.sqlite"),
                                 transcript_dir=str(tmp_path / "ledger"))
    federated = run_federated_linc(config, jobs, owners)
    for job in jobs:
        start = ContextualCalibration().fit(None, p_cf=job.p_cf)
        W, b = start.W, start.b
        for round_index in range(config.rounds):
            updates = []
            for share in owners:
                mine = share[job.id]
                probs = scorer.probabilities(SPEC, job.demonstrations, [e.text for e in mine])
                labels = np.array([SPEC.classes.index(e.label) for e in mine])
                local = LinC(job.lr, config.local_epochs, seed=7000 + round_index, W=W, b=b)
                local.train(probs, labels)
                updates.append(({job.id: (local.W, local.b)}, {job.id: len(mine)}))
            (W, b), = weighted_mean(updates)[0].values()
        got_W, got_b = federated[job.id]
        assert np.abs(got_W - W).max() < 1e-12 and np.abs(got_b - b).max() < 1e-12
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
