"""One post-training loop for SFT and DPO together, and the methods that schedule them.

Every method shares the loop in `post_train`: one AdamW optimizer, one learning-rate
scheduler, one gradient step per iteration, whatever the method. A method is a small class
whose `loss(step, objectives)` decides which objective (or which weighted sum) the step
descends; `objectives.loss(name)` computes it on that objective's next batch.

lambda is the weight on DPO throughout: the target trade-off is
lambda f_DPO + (1 - lambda) f_SFT.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, get_scheduler

from federation.errors import Pv4fadError
from llm_modules.alignment.post_training_losses import (
    ObjectiveData,
    evaluate,
    preference_loss,
    sft_loss,
)

OBJECTIVES = ("sft", "dpo")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class PostTrainConfig:
    """Hyper-parameters of one run: `steps` optimizer steps in all, whatever the method."""

    method: str = "alright"
    lam: float = 0.5  # weight on DPO
    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 16
    beta: float = 0.1  # DPO inverse temperature
    max_grad_norm: float = 1.0
    schedule: str = "constant"  # as the paper's code; one schedule spans every stage
    warmup_steps: int = 0
    refresh_every: int = 10  # MAXRIGHT: re-evaluate both gaps every this many steps
    sft_opt: float = 0.0  # f_SFT*, for MAXRIGHT's gaps (0 when unknown)
    dpo_opt: float = 0.0  # f_DPO*
    eval_every: int = 0  # held-out evaluation every this many steps (0: start and end)
    seed: int = 0

    def check(self) -> None:
        """Refuse settings that cannot run, naming the option."""
        if self.method not in METHODS:
            raise Pv4fadError(f"unknown post-training method {self.method!r} "
                              f"(expected one of {', '.join(METHODS)})")
        if not 0.0 <= self.lam <= 1.0:
            raise Pv4fadError(f"lambda must be in [0, 1], got {self.lam}")
        for name in ("steps", "batch_size", "refresh_every"):
            if getattr(self, name) < 1:
                raise Pv4fadError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.beta <= 0:
            raise Pv4fadError(f"lr and beta must be positive, got {self.lr} and {self.beta}")
        if self.schedule not in SCHEDULES:
            raise Pv4fadError(f"unknown schedule {self.schedule!r} (expected one of {SCHEDULES})")


class BatchStream:
    """An objective's endless stream of batches: a fresh seeded permutation per epoch.
    `peek` shows the next batch without consuming it (MAXRIGHT evaluates it first)."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size = size, min(batch_size, size)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0

    def peek(self) -> list[int]:
        if self.position + self.batch_size > len(self.order):
            # Drop the epoch's remainder so every batch has the same size.
            self.order = torch.randperm(self.size, generator=self.generator).tolist()
            self.position = 0
        return self.order[self.position : self.position + self.batch_size]

    def take(self) -> list[int]:
        rows = self.peek()
        self.position += self.batch_size
        return rows


class Objectives:
    """The training side of both objectives: their batch streams and losses, and how many
    gradient evaluations each received."""

    def __init__(self, model: PreTrainedModel, data: ObjectiveData, config: PostTrainConfig):
        self.model, self.data, self.beta = model, data, config.beta
        self.device = next(model.parameters()).device
        self.streams = {
            "sft": BatchStream(len(data.sft), config.batch_size, config.seed * 2 + 1),
            "dpo": BatchStream(len(data.pairs), config.batch_size, config.seed * 2 + 2),
        }
        self.updates = dict.fromkeys(OBJECTIVES, 0)
        # The batch last built for each objective: a peeked batch is reused by the update.
        self._built: dict[str, tuple[list[int], tuple]] = {}

    def _loss(self, name: str, rows: list[int]) -> torch.Tensor:
        cached = self._built.get(name)
        if cached is None or cached[0] != rows:
            if name == "sft":
                cached = (rows, (self.data.sft_batch(rows, self.device),))
            else:
                cached = (rows, self.data.pair_batch(rows, self.device))
            self._built[name] = cached
        if name == "sft":
            return sft_loss(self.model, *cached[1])
        return preference_loss(self.model, *cached[1], self.beta)

    def loss(self, name: str) -> torch.Tensor:
        """The objective's loss on its next batch, with gradients; consumes the batch."""
        self.updates[name] += 1
        return self._loss(name, self.streams[name].take())

    @torch.no_grad()
    def peek_loss(self, name: str) -> float:
        """The objective's loss on the batch `loss(name)` would use next, without gradients."""
        return float(self._loss(name, self.streams[name].peek()))


class PostTrainMethod:
    """Base: descend one objective each step, chosen by `loss`."""

    def __init__(self, config: PostTrainConfig) -> None:
        self.config = config

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        raise NotImplementedError


METHODS: dict[str, type[PostTrainMethod]] = {}


def register_method(name: str) -> Callable[[type[PostTrainMethod]], type[PostTrainMethod]]:
    def add(cls: type[PostTrainMethod]) -> type[PostTrainMethod]:
        METHODS[name] = cls
        return cls

    return add


@register_method("sft")
class SFTOnly(PostTrainMethod):
    """SFT alone (gives f_SFT*)."""

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        return objectives.loss("sft")


@register_method("dpo")
class DPOOnly(PostTrainMethod):
    """DPO alone (gives f_DPO*)."""

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        return objectives.loss("dpo")


@register_method("sft-then-dpo")
class SFTThenDPO(PostTrainMethod):
    """Sequential: the first round((1 - lambda) steps) on SFT, the rest on DPO, so each
    objective gets the number of steps ALRIGHT gives it in expectation."""

    order = ("sft", "dpo")

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        first_share = 1.0 - self.config.lam if self.order[0] == "sft" else self.config.lam
        switch = round(first_share * self.config.steps)
        return objectives.loss(self.order[0] if step < switch else self.order[1])


@register_method("dpo-then-sft")
class DPOThenSFT(SFTThenDPO):
    """Sequential the other way: round(lambda steps) on DPO, then SFT."""

    order = ("dpo", "sft")


@register_method("mix")
class Mix(PostTrainMethod):
    """The weighted sum (1 - lambda) f_SFT + lambda f_DPO every step: one gradient of each,
    about twice the cost of a step of the other methods."""

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        lam = self.config.lam
        return (1 - lam) * objectives.loss("sft") + lam * objectives.loss("dpo")


@register_method("alright")
class ALRIGHT(PostTrainMethod):
    """Each step, DPO with probability lambda, else SFT (a seeded draw)."""

    def __init__(self, config: PostTrainConfig) -> None:
        super().__init__(config)
        self.generator = torch.Generator().manual_seed(config.seed)

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        draw = float(torch.rand(1, generator=self.generator))
        return objectives.loss("dpo" if draw < self.config.lam else "sft")


@register_method("maxright")
class MAXRIGHT(PostTrainMethod):
    """Each step, the objective with the larger weighted gap (1 - lambda)(f_SFT - f_SFT*)
    against lambda (f_DPO - f_DPO*) (SFT on a tie). Both gaps are measured, without
    gradients, on the batches each objective uses next, at step 0 and every
    `refresh_every` steps; in between only the updated objective's gap is refreshed, from
    the loss just computed (before its update), and the other's stays stale."""

    def __init__(self, config: PostTrainConfig) -> None:
        super().__init__(config)
        self.weight = {"sft": 1.0 - config.lam, "dpo": config.lam}
        self.optimum = {"sft": config.sft_opt, "dpo": config.dpo_opt}
        self.gaps = dict.fromkeys(OBJECTIVES, 0.0)

    def gap(self, name: str, value: float) -> float:
        return self.weight[name] * (value - self.optimum[name])

    def loss(self, step: int, objectives: Objectives) -> torch.Tensor:
        if step % self.config.refresh_every == 0:
            self.gaps = {name: self.gap(name, objectives.peek_loss(name)) for name in OBJECTIVES}
        name = max(OBJECTIVES, key=lambda n: self.gaps[n])
        loss = objectives.loss(name)
        self.gaps[name] = self.gap(name, float(loss.detach()))
        return loss


@dataclass
class PostTrainResult:
    """What a run did: held-out (step, f_SFT, f_DPO) points, gradient evaluations per
    objective, and the training time (held-out evaluation excluded): wall-clock seconds and
    the CPU seconds of the training thread (which, with one intra-op thread, is all of the
    CPU work and is not inflated by other processes competing for the cores)."""

    trajectory: list[tuple[int, float, float]] = field(default_factory=list)
    updates: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def final(self) -> tuple[float, float]:
        return self.trajectory[-1][1], self.trajectory[-1][2]


def post_train(
    model: PreTrainedModel,
    train: ObjectiveData,
    config: PostTrainConfig,
    held_out: ObjectiveData | None = None,
    on_eval: Callable[[int, float, float], None] | None = None,
) -> PostTrainResult:
    """Post-train `model` in place with `config.method`; evaluates on `held_out` at the
    start, every `eval_every` steps and at the end."""
    config.check()
    method = METHODS[config.method](config)
    objectives = Objectives(model, train, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    scheduler = get_scheduler(config.schedule, optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=config.steps)
    result = PostTrainResult()

    def checkpoint(step: int) -> None:
        if held_out is not None:
            f_sft, f_dpo = evaluate(model, held_out, config.beta)
            result.trajectory.append((step, f_sft, f_dpo))
            if on_eval is not None:
                on_eval(step, f_sft, f_dpo)

    checkpoint(0)
    model.train()
    for step in range(config.steps):
        started, cpu_started = time.perf_counter(), time.thread_time()
        loss = method.loss(step, objectives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if objectives.device.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: time them, not their launch
        result.seconds += time.perf_counter() - started
        result.cpu_seconds += time.thread_time() - cpu_started
        done = step + 1
        if done == config.steps or (config.eval_every and done % config.eval_every == 0):
            checkpoint(done)
    model.eval()
    result.updates = dict(objectives.updates)
    return result


def model_digest(model: PreTrainedModel) -> str:
    """SHA-256 over every parameter (name, dtype, shape, bytes) in name order: equal digests
    mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
