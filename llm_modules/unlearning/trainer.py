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
    # Optimiser steps to run, cycling over the forget set as many times as needed (the
    # last pass may be partial); None: `epochs` full passes.
    max_steps: int | None = None
    # Keep float32 master copies of low-precision (bf16 / fp16) weights: AdamW updates the
    # masters and the model gets them rounded, so updates below half a bf16 ULP accumulate
    # instead of being lost at every step. The forward and backward passes stay in the
    # model's dtype. No effect on a float32 model.
    fp32_master: bool = False

    def steps_for(self, n_forget: int) -> int:
        """Optimiser steps this config runs on a forget set of `n_forget` facts."""
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * -(-n_forget // self.batch_size)


class MasterWeights:
    """float32 masters of a low-precision model's trainable weights (mixed precision)."""

    def __init__(self, params: dict[str, torch.nn.Parameter]) -> None:
        self.params = {n: p for n, p in params.items() if p.requires_grad}
        self.masters = {
            n: torch.nn.Parameter(p.detach().float().clone()) for n, p in self.params.items()
        }

    def load_grads(self) -> None:
        """Copy the model's gradients (after masking) onto the masters, in float32."""
        for name, param in self.params.items():
            master = self.masters[name]
            master.grad = None if param.grad is None else param.grad.detach().float()

    @torch.no_grad()
    def write_back(self) -> None:
        """Round the masters into the model's weights."""
        for name, param in self.params.items():
            param.copy_(self.masters[name].to(param.dtype))


def _is_low_precision(params: dict[str, torch.nn.Parameter]) -> bool:
    return any(p.dtype in (torch.bfloat16, torch.float16) for p in params.values())


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
    so weights outside the mask never move. `on_epoch` gets each pass's mean loss.
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
    masters = MasterWeights(params) if config.fp32_master and _is_low_precision(params) else None
    trained = list(masters.masters.values()) if masters else [
        p for p in params.values() if p.requires_grad
    ]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    model.train()
    retain_step = 0
    total_steps = config.steps_for(len(forget))
    step = 0
    epoch = 0
    while step < total_steps:
        order = torch.randperm(len(forget), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), config.batch_size):
            if step == total_steps:
                break
            step += 1
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
            if masters is not None:
                masters.load_grads()
            torch.nn.utils.clip_grad_norm_(trained, config.max_grad_norm)
            optimizer.step()
            if masters is not None:
                masters.write_back()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch, sum(losses) / len(losses))
        epoch += 1
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
