"""WAGLE weight attribution and the baseline masks it is compared with.

Score per weight: S_i = |(theta_i - g_r,i / mu) * g_f,i|, with g_f and g_r the gradients of
the forget and retain NLL summed over the whole sets (mu = 1e-6 as in the released configs).
The mask keeps the global top `ratio` of weights trainable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import Pv4fadError
from llm_modules.unlearning.data import Fact, batches, encode_facts
from llm_modules.unlearning.scoring import answer_nll
from llm_modules.unlearning.trainer import Mask

MASK_KINDS = ("wagle", "random", "magnitude", "forget-gradient")


def summed_nll_gradients(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """Gradient of the NLL summed over every answer token of `facts`."""
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    model.eval()
    for chunk in batches(facts, batch_size):
        total, _ = answer_nll(model, encode_facts(tokenizer, chunk).to(device))
        total.sum().backward()
    grads = {
        name: (p.grad.detach().float().clone() if p.grad is not None else torch.zeros_like(p))
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    model.zero_grad(set_to_none=True)
    return grads


def wagle_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: Sequence[Fact],
    retain: Sequence[Fact],
    mu: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """WAGLE attribution S_i for every trainable weight."""
    grad_forget = summed_nll_gradients(model, tokenizer, forget)
    grad_retain = summed_nll_gradients(model, tokenizer, retain)
    params = dict(model.named_parameters())
    return {
        name: ((params[name].detach().float() - grad_retain[name] / mu) * g_f).abs()
        for name, g_f in grad_forget.items()
    }


def top_ratio_mask(scores: dict[str, torch.Tensor], ratio: float) -> Mask:
    """Keep the global top `ratio` fraction of weights by score (ties broken by order)."""
    if not 0.0 < ratio <= 1.0:
        raise Pv4fadError(f"mask ratio must be in (0, 1], got {ratio}")
    flat = torch.cat([s.detach().cpu().flatten() for s in scores.values()])
    keep = max(1, round(ratio * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    mask, offset = {}, 0
    for name, score in scores.items():
        mask[name] = chosen[offset : offset + score.numel()].view_as(score).float()
        offset += score.numel()
    return mask


def build_mask(
    kind: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: Sequence[Fact],
    retain: Sequence[Fact],
    ratio: float,
    seed: int = 0,
) -> Mask:
    """A mask of `kind` (WAGLE or a baseline) keeping `ratio` of the weights trainable.

    The random baseline is a pruning pattern, not a secret: it is seeded for reproducibility.
    """
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if kind == "wagle":
        scores = wagle_scores(model, tokenizer, forget, retain)
    elif kind == "magnitude":
        scores = {n: p.detach().float().abs() for n, p in named.items()}
    elif kind == "forget-gradient":
        grads = summed_nll_gradients(model, tokenizer, forget)
        scores = {n: g.abs() for n, g in grads.items()}
    elif kind == "random":
        generator = torch.Generator().manual_seed(seed)
        scores = {n: torch.rand(p.shape, generator=generator) for n, p in named.items()}
    else:
        raise Pv4fadError(f"unknown mask kind {kind!r} (expected one of {MASK_KINDS})")
    device = next(model.parameters()).device
    return {name: m.to(device) for name, m in top_ratio_mask(scores, ratio).items()}
