"""Unlearning on a tiny built-in benchmark: memorisation, losses, masks, TIES, errors, CLI."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from federation import cli as federation_cli
from federation.errors import DataError, Pv4fadError
from llm_modules.models import (
    ModelError,
    TinyModelConfig,
    load_causal_lm,
    save_causal_lm,
    tiny_causal_lm,
)
from llm_modules.unlearning.benchmark import BenchmarkConfig, build_benchmark
from llm_modules.unlearning.data import encode_facts, load_facts
from llm_modules.unlearning.evaluate import evaluate_unlearning
from llm_modules.unlearning.methods import make_method
from llm_modules.unlearning.scoring import mean_answer_nll
from llm_modules.unlearning.spunge import (
    elect_and_merge,
    split_by_attribute,
    task_arithmetic,
    ties_merge,
    trim_task_vector,
)
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn
from llm_modules.unlearning.wagle import build_mask, top_ratio_mask

TINY = BenchmarkConfig(
    n_entities=12, n_forget=3, n_holdout=3, model=TinyModelConfig(width=64), train_epochs=150,
    seed=1,
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads; one thread is fastest on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    paths = build_benchmark(TINY, tmp_path_factory.mktemp("unlearning"))
    return paths, paths.load_splits()


def test_target_has_memorised_the_forget_set_and_the_retain_only_model_has_not(bench):
    paths, splits = bench
    target, tokenizer = load_causal_lm(paths.target)
    retain_only, _ = load_causal_lm(paths.retain_model)
    got = evaluate_unlearning(target, tokenizer, splits)
    ref = evaluate_unlearning(retain_only, tokenizer, splits)
    assert got["forget_probability"] > 0.9 and ref["forget_probability"] < 0.4
    assert got["forget_rouge"] > 0.9 and ref["forget_rouge"] < 0.7
    assert got["retain_probability"] > 0.9 and ref["retain_probability"] > 0.9


def test_graddiff_and_npo_losses_match_their_definitions(bench):
    paths, splits = bench
    model, tokenizer = load_causal_lm(paths.target)
    forget = encode_facts(tokenizer, splits["forget"][:4])
    retain = encode_facts(tokenizer, splits["retain"][:4])
    with torch.no_grad():
        nll_f, nll_r = mean_answer_nll(model, forget), mean_answer_nll(model, retain)
        graddiff = make_method("graddiff", model).compute_loss(model, forget, retain)
        npo = make_method("npo", model, beta=0.1).compute_loss(model, forget, retain)
    assert float(graddiff) == pytest.approx(float(-nll_f + nll_r), rel=1e-5)
    # At the reference weights NPO's forget term is -(2/beta) log sigmoid(0) = 20 log 2.
    assert float(npo) == pytest.approx(20 * math.log(2) + float(nll_r), rel=1e-5)


@pytest.mark.parametrize("method", ["gradascent", "graddiff", "npo", "rmu"])
def test_unlearning_lowers_forget_probability(bench, method):
    paths, splits = bench
    model, tokenizer = load_causal_lm(paths.target)
    before = evaluate_unlearning(model, tokenizer, {"forget": splits["forget"]})
    unlearn(model, tokenizer, splits["forget"], splits["retain"],
            UnlearnConfig(method=method, epochs=5, lr=1e-3))
    after = evaluate_unlearning(model, tokenizer, {"forget": splits["forget"]})
    assert after["forget_probability"] < 0.5 * before["forget_probability"]


@pytest.mark.parametrize("kind", ["wagle", "random", "magnitude", "forget-gradient"])
def test_only_masked_weights_change(bench, kind):
    paths, splits = bench
    model, tokenizer = load_causal_lm(paths.target)
    mask = build_mask(kind, model, tokenizer, splits["forget"], splits["retain"], 0.3)
    kept = sum(float(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert kept == pytest.approx(0.3, abs=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    unlearn(model, tokenizer, splits["forget"], splits["retain"],
            UnlearnConfig(method="graddiff", epochs=2, lr=1e-3), mask=mask)
    moved = 0
    for name, param in model.named_parameters():
        changed = param.detach() != before[name]
        assert not changed[mask[name] == 0].any(), f"{name} changed outside the mask"
        moved += int(changed.sum())
    assert moved > 0


def test_top_ratio_mask_is_global_over_all_tensors():
    scores = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([[2.0, 0.0]])}
    mask = top_ratio_mask(scores, 0.5)
    assert mask["a"].tolist() == [1.0, 0.0] and mask["b"].tolist() == [[1.0, 0.0]]
    with pytest.raises(Pv4fadError, match="ratio"):
        top_ratio_mask(scores, 1.5)


def test_ties_merge_on_hand_made_task_vectors():
    first = {"w": torch.tensor([3.0, -1.0, 0.5, 0.0])}
    second = {"w": torch.tensor([-2.0, -2.0, 1.0, 0.0])}
    assert trim_task_vector(first, 0.5)["w"].tolist() == [3.0, -1.0, 0.0, 0.0]
    # Trimmed: [3, -1, 0, 0] and [-2, -2, 0, 0]; elected signs (+, -, 0, 0);
    # disjoint means: 3 (only the positive entry agrees), (-1 - 2) / 2, 0, 0.
    assert ties_merge([first, second], keep=0.5)["w"].tolist() == [3.0, -1.5, 0.0, 0.0]
    untrimmed = elect_and_merge([first, second])["w"]
    assert untrimmed.tolist() == [3.0, -1.5, 0.75, 0.0]
    assert task_arithmetic([first, second])["w"].tolist() == [1.0, -3.0, 1.5, 0.0]


def test_split_by_attribute_groups_and_names_a_missing_attribute(bench):
    _, splits = bench
    groups = split_by_attribute(splits["forget"], "field")
    assert sorted(groups) == list(groups) and sum(map(len, groups.values())) == 12
    with pytest.raises(DataError, match="no attribute 'colour'"):
        split_by_attribute(splits["forget"], "colour")


def test_empty_forget_split_is_an_error(bench):
    paths, splits = bench
    model, tokenizer = load_causal_lm(paths.target)
    with pytest.raises(DataError, match="forget split is empty"):
        unlearn(model, tokenizer, [], splits["retain"], UnlearnConfig())


def _pv4fad(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(federation_cli, "COMMAND_MODULES", ("llm_modules.cli",))
    code = federation_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unlearn_then_eval_json(bench, tmp_path, monkeypatch, capsys):
    paths, _ = bench
    out = tmp_path / "unlearned"
    code, stdout, _ = _pv4fad(
        monkeypatch, capsys, "llm", "unlearn", "--model", str(paths.target), "--method", "npo",
        "--wagle", "0.9", "--spunge-attr", "field", "--epochs", "3",
        "--forget", str(paths.split("forget")), "--retain", str(paths.split("retain")),
        "--out", str(out), "--json",
    )
    assert code == 0 and json.loads(stdout)["out"] == str(out)
    code, stdout, _ = _pv4fad(
        monkeypatch, capsys, "llm", "eval-unlearning", "--model", str(out),
        "--forget", str(paths.split("forget")), "--retain", str(paths.split("retain")),
        "--holdout", str(paths.split("holdout")), "--world", str(paths.split("world")),
        "--retain-model", str(paths.retain_model), "--json",
    )
    metrics = json.loads(stdout)["metrics"]
    assert code == 0 and 0.0 <= metrics["forget_quality"] <= 1.0 and "privleak" in metrics


def test_cli_errors_are_one_line(bench, tmp_path, monkeypatch, capsys):
    paths, _ = bench
    common = ["--forget", str(paths.split("forget")), "--retain", str(paths.split("retain")),
              "--out", str(tmp_path / "o")]
    code, _, err = _pv4fad(monkeypatch, capsys, "llm", "unlearn", "--model",
                           str(tmp_path / "nowhere"), "--method", "npo", *common)
    assert code == 2 and "is not a directory" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Who ?"}) + "\n")
    code, _, err = _pv4fad(monkeypatch, capsys, "llm", "unlearn", "--model", str(paths.target),
                           "--method", "npo", "--forget", str(bad), "--retain",
                           str(paths.split("retain")), "--out", str(tmp_path / "o"))
    assert code == 2 and "bad.jsonl:1: missing field(s) answer" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        load_facts(empty, role="forget")


def test_load_causal_lm_names_a_directory_without_a_model(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_causal_lm(tmp_path)


def test_npo_reference_model_stays_frozen(bench):
    paths, splits = bench
    model, tokenizer = load_causal_lm(paths.target)
    method = make_method("npo", model)
    snapshot = copy.deepcopy(method.reference.state_dict())
    unlearn(model, tokenizer, splits["forget"], splits["retain"],
            UnlearnConfig(method="graddiff", epochs=1))
    for name, value in method.reference.state_dict().items():
        assert torch.equal(value, snapshot[name])


def test_a_llama_architecture_runs_through_the_same_path(bench, tmp_path):
    paths, splits = bench
    _, tokenizer = load_causal_lm(paths.target)
    llama = tiny_causal_lm(TinyModelConfig(arch="llama", width=32, heads=2), tokenizer, seed=0)
    model, tokenizer = load_causal_lm(save_causal_lm(llama, tokenizer, tmp_path / "llama"))
    assert model.config.model_type == "llama"
    mask = build_mask("wagle", model, tokenizer, splits["forget"], splits["retain"], 0.9)
    unlearn(model, tokenizer, splits["forget"], splits["retain"],
            UnlearnConfig(method="rmu", epochs=1), mask=mask)
    got = evaluate_unlearning(model, tokenizer, {"forget": splits["forget"]})
    assert 0.0 <= got["forget_probability"] <= 1.0
