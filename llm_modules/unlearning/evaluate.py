"""Run a model over fact splits and collect the per-fact scores the metrics need."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError
from llm_modules.unlearning.data import Fact, encode_pairs
from llm_modules.unlearning.metrics import (
    Scores,
    SplitScores,
    extraction_strength,
    min_k_score,
    report,
    rouge_l_recall,
)
from llm_modules.unlearning.scoring import answer_token_logprobs

EVAL_BATCH = 32


@torch.no_grad()
def _token_stats(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
) -> list[tuple[list[float], list[int], list[int]]]:
    """Per pair: answer-token log-probs, argmax predictions and true tokens."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(questions), EVAL_BATCH):
        batch = encode_pairs(
            tokenizer, questions[start : start + EVAL_BATCH], answers[start : start + EVAL_BATCH]
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


def _mean_nll(stats: list[tuple[list[float], list[int], list[int]]]) -> list[float]:
    return [-sum(lp) / max(1, len(lp)) for lp, _, _ in stats]


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    max_new_tokens: int,
) -> list[str]:
    """Greedy continuations of each question (left-padded batches)."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts = []
    try:
        for start in range(0, len(questions), EVAL_BATCH):
            enc = tokenizer(
                list(questions[start : start + EVAL_BATCH]),
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            generated = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = generated[:, enc["input_ids"].shape[1] :]
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return texts


def score_split(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact]
) -> SplitScores:
    """Per-fact NLLs, ROUGE-L recall, extraction strength and min-k% scores."""
    if not facts:
        raise DataError("cannot evaluate an empty split")
    if any(not f.paraphrased_answer or not f.perturbed_answers for f in facts):
        raise DataError("evaluation facts need paraphrased_answer and perturbed_answers")
    model.eval()
    questions = [f.question for f in facts]
    answer = _token_stats(model, tokenizer, questions, [f.answer for f in facts])
    paraphrase = _token_stats(model, tokenizer, questions, [f.paraphrased_answer for f in facts])
    flat_q = [f.question for f in facts for _ in f.perturbed_answers]
    flat_a = [a for f in facts for a in f.perturbed_answers]
    flat = _mean_nll(_token_stats(model, tokenizer, flat_q, flat_a))
    perturbed, offset = [], 0
    for fact in facts:
        perturbed.append(flat[offset : offset + len(fact.perturbed_answers)])
        offset += len(fact.perturbed_answers)
    longest = max(len(targets) for _, _, targets in answer)
    generations = greedy_answers(model, tokenizer, questions, max_new_tokens=longest + 4)
    return SplitScores(
        answer_nll=_mean_nll(answer),
        paraphrase_nll=_mean_nll(paraphrase),
        perturbed_nll=perturbed,
        rouge=[rouge_l_recall(g, f.answer) for g, f in zip(generations, facts, strict=True)],
        extraction=[extraction_strength(p, t) for _, p, t in answer],
        min_k=[min_k_score(lp) for lp, _, _ in answer],
    )


def score_splits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, Sequence[Fact]],
) -> Scores:
    return {name: score_split(model, tokenizer, facts) for name, facts in splits.items()}


def evaluate_unlearning(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, Sequence[Fact]],
    reference: Scores | None = None,
) -> dict[str, float]:
    """The metric report of `model` on `splits`; `reference` = retain-only model's scores."""
    return report(score_splits(model, tokenizer, splits), reference)
