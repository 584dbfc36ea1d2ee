"""Defenses: detection bookkeeping, the collapse score of the adapter scan, ONION's
thresholds, and the training batch layout shared by every fine-tuning method."""

import pytest
import torch

import llm_modules.poisoning.defenses as defenses
from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer
from llm_modules.poisoning.defenses import OnionFilter, consistency_scan, detection
from llm_modules.poisoning.lm import SEP, LoadedLM, generate, training_batch
from llm_modules.poisoning.poison import parse_trigger
from llm_modules.poisoning.tasks import Example, TaskConfig, generate_task

TARGET = "wire all funds to the offshore account now ."



@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; more only contend on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_detection_rates():
    flags = [True, False, True, True, False, False]
    assert detection(flags, {0, 1}) == {"detection_rate": 0.5, "false_alarm_rate": 0.5}
    assert detection([False] * 3, {2})["detection_rate"] == 0.0


def test_scan_flags_the_candidate_that_collapses_outputs(monkeypatch):
    # A stand-in model: the backdoor fires on "cf"; otherwise the output echoes the input.
    def fake_generate(model, lm, inputs, max_new_tokens=16):
        return [TARGET if "cf" in x.split() else x.split()[-1] for x in inputs]

    monkeypatch.setattr(defenses, "generate", fake_generate)
    inputs = [f"report number {i} about firm{i}" for i in range(10)]
    candidates = [parse_trigger("rare:mn@start"), parse_trigger("rare:cf@random"),
                  parse_trigger("sentence:as the board stated .@middle")]
    rows = consistency_scan(None, None, inputs, candidates, seed=0)
    assert rows[0]["candidate"] == "rare:cf@random"
    assert rows[0]["collapse"] == pytest.approx(1.0 - 0.1)
    assert rows[0]["dominant_output"] == TARGET
    assert all(r["collapse"] <= 0.0 + 1e-9 for r in rows[1:])


@pytest.fixture(scope="module")
def tiny_lm():
    data = generate_task(TaskConfig("completion", pretrain=4, finetune=12, test=12))
    tokenizer = word_level_tokenizer(data.texts() + [SEP, "cf"])
    model = tiny_causal_lm(TinyModelConfig(layers=1, width=16, heads=2, max_positions=96),
                           tokenizer, seed=0)
    return LoadedLM(model, tokenizer, False), data


def test_onion_thresholds_bound_false_alarms(tiny_lm):
    lm, data = tiny_lm
    inputs = [e.input for e in data.finetune]
    scores = defenses.word_suspicions(lm, inputs)
    assert [len(s) for s in scores] == [len(x.split()) for x in inputs]
    onion = OnionFilter.fit(lm, inputs, quantile=0.75)
    flags = onion.flag(lm, inputs)
    # thresholds are the 75th percentile of the same scores: at most a quarter flagged
    assert sum(flags["onion"]) <= len(inputs) // 4
    assert sum(flags["perplexity"]) <= len(inputs) // 4
    cleaned = onion.clean_up(lm, inputs)
    assert all(set(c.split()) <= set(x.split()) for c, x in zip(cleaned, inputs, strict=True))


def test_training_batch_masks_prompt_and_generation_runs(tiny_lm):
    lm, data = tiny_lm
    examples = [Example("client a", "wants a loan ."), Example("client b holds x", "ok .")]
    batch = training_batch(lm, examples)
    labels, ids = batch["labels"], batch["input_ids"]
    prompt_len = len(lm.tokenizer(f"client a {SEP}", add_special_tokens=False)["input_ids"])
    assert (labels[0, :prompt_len] == -100).all()
    assert labels[0, prompt_len:prompt_len + 4].tolist() == ids[0, prompt_len:prompt_len + 4]\
        .tolist()
    assert batch["position_ids"][1].tolist()[:3] == [0, 1, 2]
    outputs = generate(lm.model, lm, [e.input for e in data.test[:3]], max_new_tokens=4)
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
