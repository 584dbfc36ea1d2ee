"""SimNPO, IdkNLL, IdkDPO, GradDiff coefficients and KL retain term, against their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from federation.errors import Pv4fadError
from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer
from llm_modules.unlearning.data import Fact, encode_pairs
from llm_modules.unlearning.methods import IDK_ANSWERS, MethodOptions, make_method
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn

QUESTIONS = ["who wrote the red book ?", "where was ana born ?"]
ANSWERS = ["mira wrote it .", "ana was born in lima ."]
RETAIN_Q = ["what does tom write ?"]
RETAIN_A = ["tom writes crime novels ."]


@pytest.fixture(scope="module")
def tiny():
    texts = QUESTIONS + ANSWERS + RETAIN_Q + RETAIN_A + list(IDK_ANSWERS)
    tokenizer = word_level_tokenizer(texts)
    model = tiny_causal_lm(TinyModelConfig(width=32, heads=2, layers=1), tokenizer, seed=5)
    return model, tokenizer


def _hf_mean_nll(model, tokenizer, question: str, answer: str) -> float:
    """Oracle outside the suite's scoring: HF's own shifted cross-entropy of one example."""
    batch = encode_pairs(tokenizer, [question], [answer])
    with torch.no_grad():
        return float(model(input_ids=batch.input_ids, labels=batch.labels).loss)


def _perturbed(model):
    other = tiny_causal_lm(TinyModelConfig(width=32, heads=2, layers=1),
                           _tok_len_proxy(model), seed=6)
    return other


def _tok_len_proxy(model):
    class _T:  # vocabulary size and special ids are all tiny_causal_lm reads
        pad_token_id = model.config.pad_token_id
        eos_token_id = model.config.eos_token_id

        def __len__(self):
            return model.config.vocab_size

    return _T()


def test_graddiff_weights_its_terms_with_gamma_and_alpha(tiny):
    model, tokenizer = tiny
    forget = encode_pairs(tokenizer, QUESTIONS, ANSWERS)
    retain = encode_pairs(tokenizer, RETAIN_Q, RETAIN_A)
    method = make_method("graddiff", model, options=MethodOptions(gamma=0.5, alpha=2.0))
    with torch.no_grad():
        loss = float(method.compute_loss(model, forget, retain))
        nll_f = float(model(input_ids=forget.input_ids, attention_mask=forget.attention_mask,
                            labels=forget.labels).loss)
    nll_r = _hf_mean_nll(model, tokenizer, RETAIN_Q[0], RETAIN_A[0])
    assert loss == pytest.approx(-0.5 * nll_f + 2.0 * nll_r, abs=1e-5)


def test_simnpo_by_hand(tiny):
    model, tokenizer = tiny
    forget = encode_pairs(tokenizer, QUESTIONS, ANSWERS)
    retain = encode_pairs(tokenizer, RETAIN_Q, RETAIN_A)
    opts = MethodOptions(gamma=0.125, delta=0.5)
    method = make_method("simnpo", model, options=opts)
    assert method.beta == 4.5  # open-unlearning's default
    with torch.no_grad():
        loss = float(method.compute_loss(model, forget, retain))
    beta = 4.5
    terms = [
        -(2 / beta) * math.log(1 / (1 + math.exp(-beta * (_hf_mean_nll(model, tokenizer, q, a)
                                                          - 0.5))))
        for q, a in zip(QUESTIONS, ANSWERS, strict=True)
    ]
    expected = 0.125 * sum(terms) / 2 + _hf_mean_nll(model, tokenizer, RETAIN_Q[0], RETAIN_A[0])
    assert loss == pytest.approx(expected, abs=1e-5)


def test_idk_methods_by_hand(tiny):
    model, tokenizer = tiny
    forget = encode_pairs(tokenizer, QUESTIONS, ANSWERS)
    idk = [IDK_ANSWERS[0], IDK_ANSWERS[3]]
    alternate = encode_pairs(tokenizer, QUESTIONS, idk)
    nll = make_method("idknll", model, options=MethodOptions(alpha=0.0))
    with torch.no_grad():
        got = float(nll.compute_loss(model, forget, None, alternate))
        pooled = float(model(input_ids=alternate.input_ids,
                             attention_mask=alternate.attention_mask,
                             labels=alternate.labels).loss)
    assert got == pytest.approx(pooled, abs=1e-5)
    dpo = make_method("idkdpo", model)
    with torch.no_grad():
        # At the reference weights both log-ratios are 0: -(2/0.1) log sigmoid(0) = 20 log 2.
        assert float(dpo.compute_loss(model, forget, None, alternate)) == pytest.approx(
            20 * math.log(2), abs=1e-5)
        # Against a different reference: margin = (lose - lose_ref) - (win - win_ref), NLLs
        # summed per example (mean NLL times answer length, from HF's loss).
        dpo.reference = _perturbed(model).eval()

        def summed(m, q, a):
            n = int((encode_pairs(tokenizer, [q], [a]).labels != -100).sum())
            return _hf_mean_nll(m, tokenizer, q, a) * n

        terms = []
        for q, a, w in zip(QUESTIONS, ANSWERS, idk, strict=True):
            margin = (summed(model, q, a) - summed(dpo.reference, q, a)) - (
                summed(model, q, w) - summed(dpo.reference, q, w))
            terms.append(-(2 / 0.1) * F.logsigmoid(torch.tensor(0.1 * margin)).item())
        got = float(dpo.compute_loss(model, forget, None, alternate))
    assert got == pytest.approx(sum(terms) / 2, abs=1e-4)


def test_kl_retain_term_is_zero_at_the_start_and_matches_the_formula(tiny):
    model, tokenizer = tiny
    retain = encode_pairs(tokenizer, RETAIN_Q + QUESTIONS[:1], RETAIN_A + ANSWERS[:1])
    method = make_method("graddiff", model, options=MethodOptions(retain_loss="kl"))
    with torch.no_grad():
        assert float(method.retain_loss(model, retain)) == pytest.approx(0.0, abs=1e-6)
        method.reference = _perturbed(model).eval()
        p = torch.log_softmax(method.reference(input_ids=retain.input_ids,
                                               attention_mask=retain.attention_mask).logits, -1)
        q = torch.log_softmax(model(input_ids=retain.input_ids,
                                    attention_mask=retain.attention_mask).logits, -1)
        # KL(ref || model) summed over the vocabulary, averaged over every position.
        expected = float((p.exp() * (p - q)).sum(-1).mean())
        assert float(method.retain_loss(model, retain)) == pytest.approx(expected, abs=1e-6)


def test_bad_options_are_one_line_errors(tiny):
    model, _ = tiny
    with pytest.raises(Pv4fadError, match="unknown retain loss 'l2'"):
        make_method("graddiff", model, options=MethodOptions(retain_loss="l2"))
    with pytest.raises(Pv4fadError, match="beta must be positive"):
        make_method("simnpo", model, beta=0.0)


def test_idknll_run_raises_the_refusals_probability(tiny):
    import copy

    model, tokenizer = tiny
    model = copy.deepcopy(model)
    facts = [Fact(q, a) for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    retain = [Fact(RETAIN_Q[0], RETAIN_A[0])]
    before = _hf_mean_nll(model, tokenizer, QUESTIONS[0], IDK_ANSWERS[0])
    unlearn(model, tokenizer, facts, retain,
            UnlearnConfig(method="idknll", epochs=30, lr=3e-3, seed=1, alpha=0.0))
    with torch.no_grad():
        after = _hf_mean_nll(model, tokenizer, QUESTIONS[0], IDK_ANSWERS[0])
    assert after < before - 0.5


def test_rmu_averages_per_example_then_over_the_batch():
    from llm_modules.unlearning.data import QABatch
    from llm_modules.unlearning.methods import RMU

    hidden = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [9.0, 9.0]],
                           [[0.0, 2.0], [4.0, 0.0], [1.0, 1.0]]])
    labels = torch.tensor([[-100, 5, -100], [-100, 5, 6]])
    batch = QABatch(torch.zeros_like(labels), torch.ones_like(labels), labels)
    # Example 0: one answer token, mean over units of (4, 4) = 4. Example 1: tokens with
    # means 8 and 1 -> 4.5. Batch mean 4.25 (pooled tokens would give (4 + 8 + 1) / 3).
    got = RMU.activation_loss(hidden, torch.zeros_like(hidden), batch)
    assert float(got) == pytest.approx(4.25, abs=1e-6)


def test_rmu_layer_and_steering_are_settable(tiny):
    model, _ = tiny
    method = make_method("rmu", model, options=MethodOptions(steering=3.0, rmu_layer=0))
    assert method.layer == 1 and float(method.control.norm()) == pytest.approx(3.0, abs=1e-5)
    with pytest.raises(Pv4fadError, match="--rmu-layer must be in"):
        make_method("rmu", model, options=MethodOptions(rmu_layer=5))
