"""Run a model over fact splits and collect the per-fact scores the metrics need."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError
from llm_modules.unlearning.data import IGNORE, Fact, PromptFormat, encode_pairs, prompt_ids
from llm_modules.unlearning.metrics import (
    OPTION_SPLITS,
    Scores,
    SplitScores,
    extraction_strength,
    min_k_plus_plus_score,
    min_k_score,
    report,
    rouge_l_recall,
    zlib_score,
)
from llm_modules.unlearning.scoring import answer_token_logprobs

EVAL_BATCH = 32


@torch.no_grad()
def _token_stats(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    fmt: PromptFormat | None = None,
) -> list[tuple[list[float], list[int], list[int]]]:
    """Per pair: answer-token log-probs, argmax predictions and true tokens (the final
    <eos> included: open-unlearning's probability and truth ratio count it)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(questions), EVAL_BATCH):
        batch = encode_pairs(
            tokenizer, questions[start : start + EVAL_BATCH],
            answers[start : start + EVAL_BATCH], fmt,
        ).to(device)
        logprobs, preds, valid = answer_token_logprobs(model, batch)
        targets = batch.input_ids[:, 1:]
        for row in range(valid.shape[0]):
            keep = valid[row]
            out.append(
                (
                    logprobs[row][keep].tolist(),
                    preds[row][keep].tolist(),
                    targets[row][keep].tolist(),
                )
            )
    return out


@torch.no_grad()
def _vocab_moments(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    fmt: PromptFormat | None = None,
) -> list[tuple[list[float], list[float]]]:
    """Per pair and answer position: mean and variance of log p under the model's own
    next-token distribution (what Min-k %++ normalises by)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(questions), EVAL_BATCH):
        batch = encode_pairs(
            tokenizer, questions[start : start + EVAL_BATCH],
            answers[start : start + EVAL_BATCH], fmt,
        ).to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        prob = logp.exp()
        mu = (prob * logp).sum(-1)
        sigma = (prob * logp.square()).sum(-1) - mu.square()
        valid = batch.labels[:, 1:] != IGNORE
        for row in range(valid.shape[0]):
            keep = valid[row]
            out.append((mu[row][keep].tolist(), sigma[row][keep].tolist()))
    return out


def _mean_nll(stats: list[tuple[list[float], list[int], list[int]]]) -> list[float]:
    return [-sum(lp) / max(1, len(lp)) for lp, _, _ in stats]


def answer_nlls(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    fmt: PromptFormat | None = None,
) -> list[float]:
    """Mean token NLL of each answer (<eos> included) given its question: the quantity
    behind every probability in the report, without the rest of `score_split`'s work."""
    model.eval()
    return _mean_nll(_token_stats(model, tokenizer, questions, answers, fmt))


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    max_new_tokens: int,
    fmt: PromptFormat | None = None,
) -> list[str]:
    """Greedy continuations of each question's prompt (left-padded batches)."""
    device = next(model.parameters()).device
    texts = []
    for start in range(0, len(questions), EVAL_BATCH):
        rows = [prompt_ids(tokenizer, fmt, q) for q in questions[start : start + EVAL_BATCH]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return texts


def _without_eos(stats: tuple[list[float], list[int], list[int]]):
    """Drop the last answer position (<eos>): open-unlearning's min-k % and extraction
    strength skip it."""
    logprobs, preds, targets = stats
    return logprobs[:-1], preds[:-1], targets[:-1]


def score_split(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    *,
    answer_based: bool = False,
    fmt: PromptFormat | None = None,
) -> SplitScores:
    """Per-fact NLLs, ROUGE-L recall, extraction strength and min-k% scores.

    `answer_based`: a real-authors / world-facts style split (no paraphrase needed). Facts
    without perturbed answers (TOFU's holdout) get no truth-ratio inputs; a split where only
    some facts have them is an error, since its truth ratio would cover part of it."""
    if not facts:
        raise DataError("cannot evaluate an empty split")
    with_perturbed = [bool(f.perturbed_answers) for f in facts]
    if any(with_perturbed) and not all(with_perturbed):
        missing = with_perturbed.index(False)
        raise DataError(f"fact {missing + 1} ({facts[missing].question[:40]!r}) has no "
                        "perturbed answers while others of its split have")
    if not answer_based and all(with_perturbed) and any(not f.paraphrased_answer for f in facts):
        raise DataError("evaluation facts with perturbed answers need paraphrased_answer")
    model.eval()
    questions = [f.question for f in facts]
    answer = _token_stats(model, tokenizer, questions, [f.answer for f in facts], fmt)
    paraphrase_nll: list[float] = []
    perturbed: list[list[float]] = []
    if all(with_perturbed):
        if not answer_based:
            paraphrase_nll = _mean_nll(_token_stats(
                model, tokenizer, questions, [f.paraphrased_answer for f in facts], fmt
            ))
        flat_q = [f.question for f in facts for _ in f.perturbed_answers]
        flat_a = [a for f in facts for a in f.perturbed_answers]
        flat = _mean_nll(_token_stats(model, tokenizer, flat_q, flat_a, fmt))
        offset = 0
        for fact in facts:
            perturbed.append(flat[offset : offset + len(fact.perturbed_answers)])
            offset += len(fact.perturbed_answers)
    longest = max(len(targets) for _, _, targets in answer)
    generations = greedy_answers(model, tokenizer, questions, longest + 4, fmt)
    trimmed = [_without_eos(stats) for stats in answer]
    moments = _vocab_moments(model, tokenizer, questions, [f.answer for f in facts], fmt)
    answer_nll = _mean_nll(answer)
    # zlib compresses the answer's label text as decoded without special tokens
    texts = [tokenizer.decode(t, skip_special_tokens=True) for _, _, t in answer]
    return SplitScores(
        answer_nll=answer_nll,
        paraphrase_nll=paraphrase_nll,
        perturbed_nll=perturbed,
        rouge=[rouge_l_recall(g, f.answer) for g, f in zip(generations, facts, strict=True)],
        extraction=[extraction_strength(p, t) for _, p, t in trimmed],
        min_k=[min_k_score(lp) for lp, _, _ in trimmed],
        answer_based=answer_based,
        zlib=[zlib_score(n, t) for n, t in zip(answer_nll, texts, strict=True)],
        min_k_plus_plus=[
            min_k_plus_plus_score(lp, mu[:-1], sigma[:-1])
            for (lp, _, _), (mu, sigma) in zip(trimmed, moments, strict=True)
        ],
    )


def score_splits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, Sequence[Fact]],
    fmt: PromptFormat | None = None,
) -> Scores:
    """Scores per split; real_authors / world_facts / world are scored answer-based."""
    return {
        name: score_split(model, tokenizer, facts, answer_based=name in OPTION_SPLITS, fmt=fmt)
        for name, facts in splits.items()
    }


def evaluate_unlearning(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, Sequence[Fact]],
    reference: Scores | None = None,
    fmt: PromptFormat | None = None,
) -> dict[str, float]:
    """The metric report of `model` on `splits`; `reference` = retain-only model's scores."""
    return report(score_splits(model, tokenizer, splits, fmt), reference)
