"""Per-token answer log-probabilities: the one quantity every loss and metric is built on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from llm_modules.unlearning.data import IGNORE, QABatch


def answer_token_logprobs(
    model: PreTrainedModel, batch: QABatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log p of each answer token given its prefix, and the argmax prediction there.

    Returns (logprobs, predictions, valid), each [batch, length-1]; `valid` marks answer
    tokens (labels shifted to align with the logits that predict them).
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits = logits[:, :-1].float()
    targets = batch.labels[:, 1:]
    valid = targets != IGNORE
    safe_targets = targets.clamp(min=0)
    logprobs = -F.cross_entropy(
        logits.transpose(1, 2), safe_targets, reduction="none"
    ) * valid
    return logprobs, logits.argmax(dim=-1), valid


def answer_nll(model: PreTrainedModel, batch: QABatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL over answer tokens, number of answer tokens) per example."""
    logprobs, _, valid = answer_token_logprobs(model, batch)
    return -logprobs.sum(dim=1), valid.sum(dim=1)


def mean_answer_nll(model: PreTrainedModel, batch: QABatch) -> torch.Tensor:
    """Mean token NLL over all answer tokens of the batch (the usual LM loss)."""
    total, count = answer_nll(model, batch)
    return total.sum() / count.sum().clamp(min=1)
