"""The one unlearning loop shared by every method, with optional WAGLE-style gradient masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError
from llm_modules.unlearning.data import Fact, PromptFormat, encode_facts, encode_pairs
from llm_modules.unlearning.methods import MethodOptions, make_method

Mask = dict[str, torch.Tensor]  # parameter name -> 0/1 tensor of the parameter's shape


@dataclass(frozen=True)
class UnlearnConfig:
    """Hyper-parameters of one unlearning run (lr for AdamW, epochs over the forget set)."""

    method: str = "npo"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    beta: float | None = None  # None: the method's default (NPO, IdkDPO 0.1; SimNPO 4.5)
    gamma: float = 1.0  # weight of the forget term
    alpha: float = 1.0  # weight of the retain term
    delta: float = 0.0  # SimNPO's margin
    retain_loss: str = "nll"  # or "kl": KL to the starting model on retain batches
    steering: float = 20.0  # RMU
    rmu_layer: int | None = None  # RMU; None: the middle block
    max_grad_norm: float = 1.0
    seed: int = 0
    prompt: PromptFormat | None = None  # None: the plain `question answer<eos>` format


def unlearn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: Sequence[Fact],
    retain: Sequence[Fact],
    config: UnlearnConfig,
    mask: Mask | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PreTrainedModel:
    """Unlearn `forget` from `model` in place (and return it).

    Each step pairs a shuffled forget batch with the next retain batch. With `mask`,
    gradients are multiplied by it before every optimizer step, and weight decay is off,
    so weights outside the mask never move.
    """
    if not forget:
        raise DataError("the forget split is empty: nothing to unlearn")
    torch.manual_seed(config.seed)  # before the method: RMU draws its random direction
    method = make_method(config.method, model, options=MethodOptions(
        beta=config.beta, gamma=config.gamma, alpha=config.alpha, delta=config.delta,
        retain_loss=config.retain_loss, seed=config.seed, steering=config.steering,
        rmu_layer=config.rmu_layer,
    ))
    if method.uses_retain and not retain:
        raise DataError(f"method {config.method!r} needs a retain split, and it is empty")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [p for p in params.values() if p.requires_grad], lr=config.lr, weight_decay=0.0
    )
    model.train()
    retain_step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(forget), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), config.batch_size):
            chunk = [forget[i] for i in order[start : start + config.batch_size]]
            forget_batch = encode_facts(tokenizer, chunk, config.prompt).to(device)
            retain_batch = None
            if method.uses_retain:
                retain_batch = encode_facts(
                    tokenizer, _cycle(retain, retain_step, config.batch_size), config.prompt
                ).to(device)
                retain_step += 1
            if method.uses_alternate:
                alternate = encode_pairs(
                    tokenizer, [f.question for f in chunk],
                    method.alternate_answers(len(chunk)), config.prompt,
                ).to(device)
                loss = method.compute_loss(model, forget_batch, retain_batch, alternate)
            else:
                loss = method.compute_loss(model, forget_batch, retain_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if mask is not None:
                apply_mask(params, mask)
            torch.nn.utils.clip_grad_norm_(params.values(), config.max_grad_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch, sum(losses) / len(losses))
    model.eval()
    return model


def apply_mask(params: dict[str, torch.nn.Parameter], mask: Mask) -> None:
    """Zero the gradient of every weight outside the mask (parameters absent: frozen)."""
    for name, param in params.items():
        if param.grad is None:
            continue
        keep = mask.get(name)
        if keep is None:
            param.grad.zero_()
        else:
            param.grad.mul_(keep.to(param.grad.dtype))


def _cycle(facts: Sequence[Fact], step: int, size: int) -> list[Fact]:
    start = (step * size) % len(facts)
    return [facts[(start + i) % len(facts)] for i in range(min(size, len(facts)))]
