"""Step budgets (max_steps, SPUNGE's budgets, the benchmark's step accounting) and the fp32
master-weights option for bf16 models."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer
from llm_modules.unlearning.bench import Variant, optimiser_steps
from llm_modules.unlearning.data import Fact
from llm_modules.unlearning.spunge import spunge, subset_config
from llm_modules.unlearning.trainer import MasterWeights, UnlearnConfig, unlearn

FORGET = [
    Fact("who wrote the red book ?", "mira wrote it .", attributes={"field": "arts"}),
    Fact("where was ana born ?", "ana was born in lima .", attributes={"field": "arts"}),
    Fact("what does leo sell ?", "leo sells boats .", attributes={"field": "commerce"}),
]
RETAIN = [Fact("what does tom write ?", "tom writes crime novels .")]


@pytest.fixture()
def tiny():
    texts = [t for f in FORGET + RETAIN for t in (f.question, f.answer)]
    tokenizer = word_level_tokenizer(texts)
    model = tiny_causal_lm(TinyModelConfig(width=32, heads=2, layers=1), tokenizer, seed=3)
    return model, tokenizer


def _count_forwards(model) -> list[int]:
    calls = [0]

    def hook(*_args):
        calls[0] += 1

    model.register_forward_hook(hook)
    return calls


def test_max_steps_runs_exactly_that_many_steps_across_passes(tiny):
    model, tokenizer = tiny
    calls = _count_forwards(model)
    # 3 facts at batch 2: 2 steps per pass; 5 steps = 2 full passes and half of a third
    unlearn(model, tokenizer, FORGET, RETAIN, UnlearnConfig(method="gradascent", lr=1e-4,
                                                            batch_size=2, max_steps=5))
    assert calls[0] == 5
    calls[0] = 0
    unlearn(model, tokenizer, FORGET, RETAIN, UnlearnConfig(method="gradascent", lr=1e-4,
                                                            batch_size=2, epochs=3))
    assert calls[0] == 6


def test_spunge_steps_budget_gives_each_subset_the_dense_runs_steps(tiny):
    model, tokenizer = tiny
    config = UnlearnConfig(method="gradascent", lr=1e-4, batch_size=2, epochs=2)
    assert config.steps_for(len(FORGET)) == 4
    assert subset_config(config, len(FORGET), "epochs") == config
    assert subset_config(config, len(FORGET), "steps").max_steps == 4
    calls = _count_forwards(model)
    spunge(model, tokenizer, FORGET, RETAIN, config, "field", "task-arithmetic",
           budget="steps")
    assert calls[0] == 2 * 4  # two subsets (arts, commerce), 4 steps each
    calls[0] = 0
    spunge(model, tokenizer, FORGET, RETAIN, config, "field", "task-arithmetic")
    assert calls[0] == 2 * 2  # epochs: 2 passes of one batch per subset
    dense = optimiser_steps(Variant("npo", "npo"), FORGET, config)
    steps = optimiser_steps(Variant("s", "npo", merge="ties", budget="steps"), FORGET, config)
    epochs = optimiser_steps(Variant("e", "npo", merge="ties"), FORGET, config)
    assert dense["total_steps"] == 4 and dense["passes_per_fact"] == [2.0]
    assert steps["steps_per_worker"] == [4, 4] and steps["total_steps"] == 8
    assert epochs["steps_per_worker"] == [2, 2] and epochs["passes_per_fact"] == [2.0, 2.0]


def test_fp32_masters_keep_an_update_that_bf16_rounds_away():
    weight = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    weight.grad = torch.full((8,), 0.5, dtype=torch.bfloat16)
    masters = MasterWeights({"w": weight})
    optimizer = torch.optim.AdamW(list(masters.masters.values()), lr=1e-4, weight_decay=0.0)
    masters.load_grads()
    optimizer.step()
    masters.write_back()
    # the master moved by lr; the bf16 weight (spacing 2^-8 below 1) still reads 1.0
    assert masters.masters["w"].dtype == torch.float32
    assert torch.allclose(masters.masters["w"], torch.full((8,), 1.0 - 1e-4), atol=1e-7)
    assert torch.equal(weight.detach(), torch.ones(8, dtype=torch.bfloat16))


def _layer_norm_changed(model) -> float:
    weights = model.transformer.ln_f.weight.detach()
    return float((weights != 1.0).float().mean())


def test_fp32_master_option_lets_small_updates_reach_bf16_weights(tiny):
    model, tokenizer = tiny
    bf16 = model.to(torch.bfloat16)
    assert _layer_norm_changed(bf16) == 0.0  # LayerNorm weights start at exactly 1.0
    # lr 5e-4: one AdamW step (at most ~3 lr) stays below half the bf16 spacing under 1.0
    # (2^-9), so without masters every step rounds back to 1.0; 20 steps add up with them.
    config = UnlearnConfig(method="gradascent", lr=5e-4, batch_size=3, max_steps=20)
    plain = unlearn(copy.deepcopy(bf16), tokenizer, FORGET, RETAIN, config)
    assert _layer_norm_changed(plain) == 0.0
    mastered = unlearn(copy.deepcopy(bf16), tokenizer, FORGET, RETAIN,
                       replace(config, fp32_master=True))
    assert _layer_norm_changed(mastered) > 0.3
    assert next(mastered.parameters()).dtype == torch.bfloat16  # compute stays bf16


def test_cli_rejects_a_non_positive_step_count(tmp_path, capsys):
    from federation import cli as federation_cli

    code = federation_cli.main(["llm", "unlearn", "--model", str(tmp_path), "--method", "npo",
                                "--forget", "f", "--retain", "r", "--out", str(tmp_path),
                                "--max-steps", "0"])
    assert code != 0 and "--max-steps must be at least 1" in capsys.readouterr().err
