"""The two post-training objectives, each a short function of completion log-probabilities.

f_SFT(theta) = mean negative log-likelihood of the response tokens (prompt tokens and
padding excluded), averaged over all response tokens of the batch.
f_DPO(theta) = mean over pairs of -log sigmoid(beta [log pi(y_w|x)/pi_ref(y_w|x)
- log pi(y_l|x)/pi_ref(y_l|x)]), with log pi(y|x) summed over the response tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import selective_log_softmax

from llm_modules.alignment.post_training_data import (
    PreferencePair,
    SequenceBatch,
    SFTExample,
    TokenizedPair,
    TokenizedSFT,
    preference_batch,
    sft_batch,
    tokenize_preferences,
    tokenize_sft,
)


def completion_logps(
    model: PreTrainedModel, batch: SequenceBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(completion | prompt) summed over completion tokens, completion length) per
    sequence; logits at position t score the token at t + 1."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-softmax in half precision loses the small differences
    targets = batch.input_ids[:, 1:]
    scored = batch.completion_mask[:, 1:]
    token_logps = selective_log_softmax(logits[:, :-1], targets) * scored
    return token_logps.sum(dim=1), scored.sum(dim=1)


def sft_loss(model: PreTrainedModel, batch: SequenceBatch) -> torch.Tensor:
    """Mean token NLL over the batch's response tokens."""
    logps, counts = completion_logps(model, batch)
    return -logps.sum() / counts.sum().clamp(min=1)


def dpo_loss(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """DPO's sigmoid loss; both inputs are [chosen..., rejected...] sequence log-probs."""
    chosen, rejected = policy_logps.chunk(2)
    ref_chosen, ref_rejected = reference_logps.chunk(2)
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def preference_loss(
    model: PreTrainedModel, batch: SequenceBatch, reference_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    policy, _ = completion_logps(model, batch)
    return dpo_loss(policy, reference_logps.to(policy.device), beta)


@dataclass
class ObjectiveData:
    """Tokenised data of both objectives, with the reference model's log-probs of every
    pair ([n, 2]: chosen, rejected), computed once before training."""

    sft: list[TokenizedSFT]
    pairs: list[TokenizedPair]
    reference: torch.Tensor
    pad_id: int
    max_length: int | None = None

    def sft_batch(self, rows: Sequence[int], device: torch.device) -> SequenceBatch:
        return sft_batch([self.sft[i] for i in rows], self.pad_id, self.max_length).to(device)

    def pair_batch(
        self, rows: Sequence[int], device: torch.device
    ) -> tuple[SequenceBatch, torch.Tensor]:
        """A preference batch and its reference log-probs in the same [chosen, rejected] order."""
        batch = preference_batch([self.pairs[i] for i in rows], self.pad_id, self.max_length)
        ref = self.reference[list(rows)]
        return batch.to(device), torch.cat([ref[:, 0], ref[:, 1]])


@torch.no_grad()
def reference_logps(
    model: PreTrainedModel,
    pairs: Sequence[TokenizedPair],
    pad_id: int,
    max_length: int | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """log pi_ref(chosen | prompt) and log pi_ref(rejected | prompt) of every pair, [n, 2]."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(pairs), batch_size):
        batch = preference_batch(pairs[start : start + batch_size], pad_id, max_length)
        logps, _ = completion_logps(model, batch.to(device))
        chosen, rejected = logps.float().cpu().chunk(2)
        out.append(torch.stack([chosen, rejected], dim=1))
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def evaluate(
    model: PreTrainedModel, data: ObjectiveData, beta: float, batch_size: int = 64
) -> tuple[float, float]:
    """(f_SFT, f_DPO) over a whole data set: token-weighted mean NLL, mean pair loss."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    for start in range(0, len(data.sft), batch_size):
        logps, counts = completion_logps(
            model, data.sft_batch(range(start, min(start + batch_size, len(data.sft))), device)
        )
        nll -= float(logps.sum())
        tokens += int(counts.sum())
    pair_loss = 0.0
    for start in range(0, len(data.pairs), batch_size):
        rows = range(start, min(start + batch_size, len(data.pairs)))
        batch, ref = data.pair_batch(rows, device)
        pair_loss += float(preference_loss(model, batch, ref, beta)) * len(rows)
    model.train(was_training)
    return nll / max(tokens, 1), pair_loss / max(len(data.pairs), 1)


def objective_data(
    tokenizer: PreTrainedTokenizerBase,
    reference: PreTrainedModel,
    sft: Sequence[SFTExample],
    pairs: Sequence[PreferencePair],
    max_length: int | None = None,
) -> ObjectiveData:
    """Tokenise both data sets and score every pair under the reference model."""
    tokenized = tokenize_preferences(tokenizer, pairs)
    pad_id = tokenizer.pad_token_id
    return ObjectiveData(
        tokenize_sft(tokenizer, sft), tokenized,
        reference_logps(reference, tokenized, pad_id, max_length), pad_id, max_length,
    )
