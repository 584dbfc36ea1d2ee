"""Label probabilities: prompts, first-token and whole-word scoring against direct model
calls (word-level and byte-level BPE tokenizers), batching, the result cache, data files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from federation.errors import DataError
from llm_modules.calibration.cache import ProbabilityCache, entry_key
from llm_modules.calibration.data import Example, load_examples
from llm_modules.calibration.prompts import (
    PromptError,
    PromptSpec,
    permutations,
    prompt_from_json,
    sample_demonstrations,
    with_label_counts,
)
from llm_modules.calibration.scoring import LabelScorer, score_prompts
from llm_modules.models import (
    ModelError,
    TinyModelConfig,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)

WORDS = "Review: Sentiment: good bad very fine awful film plot acting N/A [MASK] => x y z"
SPEC = PromptSpec("Review: {text} Sentiment: {label}",
                  {"neg": ("bad", "awful"), "pos": ("good", "very good")}, separator=" ")
POOL = [Example(f"{a} {b}", lab) for a, lab in (("film", "pos"), ("plot", "neg"),
                                                ("acting", "pos"), ("film", "neg"))
        for b in ("x", "y", "z")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = word_level_tokenizer([WORDS])
    model = tiny_causal_lm(TinyModelConfig(width=32, max_positions=64), tokenizer, seed=3)
    path = save_causal_lm(model.eval(), tokenizer, tmp_path_factory.mktemp("tiny") / "m")
    return path, model.eval(), tokenizer


def _next_token_probs(model, ids):
    with torch.no_grad():
        return torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)


def test_prompt_layout_demonstrations_query_and_gap():
    demos = [Example("film x", "pos"), Example("plot y", "neg")]
    assert SPEC.prompt(demos, "acting z") == (
        "Review: film x Sentiment: good Review: plot y Sentiment: bad Review: acting z "
        "Sentiment:")
    assert SPEC.gap == " "
    assert SPEC.demonstration(Example("film x", "pos"), "very good").endswith("very good")
    spec = prompt_from_json(SPEC.to_json())
    assert spec == SPEC


@pytest.mark.parametrize(("record", "message"), [
    ({"template": "{text} {label}", "labels": {"a": ["x"]}}, "at least two classes"),
    ({"template": "{label} {text}", "labels": {"a": ["x"], "b": ["y"]}}, "must come before"),
    ({"template": "{text}", "labels": {"a": ["x"], "b": ["y"]}}, "once each"),
    ({"template": "{text} {label}", "labels": {"a": ["x"], "b": [" "]}}, "non-empty"),
    ({"template": "{text} {label}", "labels": {"a": ["x"], "b": ["y"]}, "scoring": "mean"},
     "scoring 'mean'"),
    ({"template": "{text} {label}", "labels": {"a": "x"}}, "list of label words"),
    ({"template": "{text} {label}", "labels": {"a": ["x"]}, "colour": 1}, "unknown field"),
])
def test_bad_prompt_specs_are_one_line_errors(record, message):
    with pytest.raises(PromptError, match=message):
        prompt_from_json(record)


def test_demonstration_sampling_is_seeded_and_controls_order_and_proportions():
    a, b = sample_demonstrations(POOL, 4, 5), sample_demonstrations(POOL, 4, 5)
    assert a == b and a != sample_demonstrations(POOL, 4, 6)
    orders = permutations(a, 6, seed=1)
    assert len(orders) == 6 and orders[0] == a
    assert len({tuple(o) for o in orders}) == 6 and all(sorted(map(str, o)) == sorted(
        map(str, a)) for o in orders)
    chosen = with_label_counts(POOL, {"neg": 3, "pos": 1}, seed=2)
    assert sorted(e.label for e in chosen) == ["neg", "neg", "neg", "pos"]
    with pytest.raises(PromptError, match="cannot draw 13"):
        sample_demonstrations(POOL, 13, 0)


def test_first_token_scoring_sums_each_class_first_tokens(tiny):
    _, model, tokenizer = tiny
    prompt = SPEC.prompt(POOL[:2], "acting x")
    probs = score_prompts(model, tokenizer, SPEC, [prompt])[0]
    p = _next_token_probs(model, tokenizer(prompt)["input_ids"])
    ids = tokenizer.convert_tokens_to_ids
    # "very good" contributes its first token "very"; "good" and "bad"/"awful" theirs.
    expected_pos = float(p[ids("good")] + p[ids("very")])
    expected_neg = float(p[ids("bad")] + p[ids("awful")])
    np.testing.assert_allclose(probs, [expected_neg, expected_pos], rtol=1e-5)


def test_sequence_scoring_multiplies_the_tokens_of_multi_token_words(tiny):
    _, model, tokenizer = tiny
    spec = PromptSpec(SPEC.template, SPEC.labels, separator=" ", scoring="sequence")
    prompt = spec.prompt(POOL[:1], "plot z")
    probs = score_prompts(model, tokenizer, spec, [prompt])[0]
    ids = tokenizer(prompt)["input_ids"]
    tok = tokenizer.convert_tokens_to_ids
    first = _next_token_probs(model, ids)
    very_good = float(first[tok("very")] * _next_token_probs(model, ids + [tok("very")])[
        tok("good")])
    np.testing.assert_allclose(
        probs, [float(first[tok("bad")] + first[tok("awful")]),
                float(first[tok("good")]) + very_good], rtol=1e-5)


def test_batches_of_any_size_and_padding_give_the_same_probabilities(tiny):
    _, model, tokenizer = tiny
    prompts = [SPEC.prompt(POOL[: i % 4], f"film {w}") for i, w in enumerate("xyzxyzx")]
    one = score_prompts(model, tokenizer, SPEC, prompts, batch_size=1)
    many = score_prompts(model, tokenizer, SPEC, prompts, batch_size=5)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-7)


def test_shared_first_tokens_need_sequence_scoring(tiny):
    _, model, tokenizer = tiny
    spec = PromptSpec(SPEC.template, {"neg": ("very bad",), "pos": ("very good",)})
    with pytest.raises(PromptError, match="share a first label token"):
        score_prompts(model, tokenizer, spec, [spec.query("film x")])


def test_byte_level_bpe_words_are_tokenised_in_context(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(["Review: the film was great. Sentiment: positive"] * 50, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        eos_token="<eos>")
    model = tiny_causal_lm(TinyModelConfig(width=32), tokenizer, seed=0).eval()
    spec = PromptSpec("Review: {text} Sentiment: {label}",
                      {"neg": ("negative",), "pos": ("positive",)}, scoring="sequence")
    prompt = spec.query("the film was great.")
    probs = score_prompts(model, tokenizer, spec, [prompt])[0]
    ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + " negative")["input_ids"]
    assert full[: len(ids)] == ids and len(full) - len(ids) > 1  # a multi-token word
    expected = 1.0
    for step in range(len(ids), len(full)):
        expected *= float(_next_token_probs(model, full[:step])[full[step]])
    assert probs[0] == pytest.approx(expected, rel=1e-4)


def test_the_cache_serves_repeats_without_loading_the_model(tiny, tmp_path):
    path, _, _ = tiny
    cache_file = tmp_path / "probs.sqlite"
    scorer = LabelScorer(path, ProbabilityCache(cache_file), batch_size=4)
    texts = ["film x", "plot y", "acting z"]
    first = scorer.probabilities(SPEC, POOL[:2], texts)
    p_cf = scorer.content_free(SPEC, POOL[:2])
    again = LabelScorer(path, ProbabilityCache(cache_file))  # a new process would do this
    assert np.array_equal(again.probabilities(SPEC, POOL[:2], texts), first)
    assert np.array_equal(again.content_free(SPEC, POOL[:2]), p_cf)
    assert again._loaded is None  # everything came from the SQLite file
    mean = scorer.probabilities(SPEC, POOL[:2], ["N/A", "", "[MASK]"]).mean(axis=0)
    np.testing.assert_allclose(p_cf, mean / mean.sum())
    keys = {entry_key(scorer.fingerprint, SPEC, POOL[:2], "film x"),
            entry_key(scorer.fingerprint, SPEC, POOL[1:3], "film x"),
            entry_key(scorer.fingerprint, SPEC, POOL[:2], "film y"),
            entry_key("another model", SPEC, POOL[:2], "film x"),
            entry_key(scorer.fingerprint, PromptSpec("{text} => {label}", SPEC.labels),
                      POOL[:2], "film x")}
    assert len(keys) == 5


def test_model_path_and_context_errors(tiny, tmp_path):
    path, _, _ = tiny
    with pytest.raises(ModelError, match="no config.json"):
        LabelScorer(tmp_path / "nowhere")
    scorer = LabelScorer(path)
    with pytest.raises(ModelError, match="takes at most 64"):
        scorer.probabilities(SPEC, POOL * 2, ["film x"])


def test_data_files_jsonl_and_csv_and_their_errors(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"text": "film x", "label": "pos"}\n\n{"text": "plot", "label": "neg"}\n')
    assert load_examples(good, classes=("neg", "pos")) == [Example("film x", "pos"),
                                                           Example("plot", "neg")]
    table = tmp_path / "d.csv"
    table.write_text("sentence,y\nfilm x,pos\n")
    assert load_examples(table, text_field="sentence", label_field="y") == [
        Example("film x", "pos")]
    cases = {
        "missing.jsonl": (None, "does not exist"),
        "bad.jsonl": ('{"text": "a", "label": "pos"}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
        "field.jsonl": ('{"text": "a"}\n', r"field.jsonl:1: missing field\(s\) label"),
        "class.jsonl": ('{"text": "a", "label": "meh"}\n', r"class.jsonl:1: label 'meh'"),
        "empty.jsonl": ("\n", "is empty"),
        "array.jsonl": ("[1, 2]\n", "expected a JSON object"),
        "cols.csv": ("a,b\n1,2\n", r"no column\(s\) text, label"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match=message):
            load_examples(tmp_path / name, classes=("neg", "pos"))
