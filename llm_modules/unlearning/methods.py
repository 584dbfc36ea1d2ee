"""Unlearning objectives: each method is a small class overriding `compute_loss`.

The shared loop (`trainer.unlearn`) calls `compute_loss(model, forget, retain)` once per step.
A new method is a new subclass plus `@register_method("name")`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from federation.errors import Pv4fadError
from llm_modules.unlearning.data import IGNORE, QABatch
from llm_modules.unlearning.scoring import answer_nll, mean_answer_nll

METHODS: dict[str, type[UnlearnMethod]] = {}


def register_method(name: str) -> Callable[[type[UnlearnMethod]], type[UnlearnMethod]]:
    def add(cls: type[UnlearnMethod]) -> type[UnlearnMethod]:
        METHODS[name] = cls
        cls.name = name
        return cls

    return add


@dataclass(frozen=True)
class MethodOptions:
    """Coefficients, open-unlearning's names and defaults: loss = gamma * forget term +
    alpha * retain term; `beta` None takes the method's own default (NPO, IdkDPO 0.1;
    SimNPO 4.5); SimNPO's margin `delta`; retain term "nll" or "kl" (KL to the starting
    model's next-token distributions)."""

    beta: float | None = None
    gamma: float = 1.0
    alpha: float = 1.0
    delta: float = 0.0
    retain_loss: str = "nll"
    seed: int = 0
    steering: float = 20.0  # RMU's steering coefficient (set for the tiny benchmark model)
    rmu_layer: int | None = None  # RMU's hooked decoder block; None: the middle one


RETAIN_LOSSES = ("nll", "kl")


def make_method(
    name: str, model: PreTrainedModel, beta: float | None = None,
    options: MethodOptions | None = None,
) -> UnlearnMethod:
    """The method called `name`, prepared for `model` (NPO freezes a reference copy)."""
    if name not in METHODS:
        raise Pv4fadError(f"unknown unlearning method {name!r} (expected one of {sorted(METHODS)})")
    options = options or MethodOptions()
    if beta is not None:
        options = replace(options, beta=beta)
    if options.retain_loss not in RETAIN_LOSSES:
        raise Pv4fadError(f"unknown retain loss {options.retain_loss!r} (expected nll or kl)")
    if options.beta is not None and options.beta <= 0:
        raise Pv4fadError(f"beta must be positive, got {options.beta}")
    method = METHODS[name]()
    method.options = options
    method.prepare(model, beta=options.beta if options.beta is not None else method.default_beta)
    return method


def _frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    reference = copy.deepcopy(model).eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference


def retain_kl(model: PreTrainedModel, reference: PreTrainedModel, batch: QABatch) -> torch.Tensor:
    """KL(reference || model) of next-token distributions, averaged over every position of
    the padded batch (prompt and padding included), as open-unlearning's KL retain loss."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    with torch.no_grad():
        ref = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    vocab = logits.shape[-1]
    current = F.log_softmax(logits.float(), dim=-1).view(-1, vocab)
    target = F.log_softmax(ref.float(), dim=-1).view(-1, vocab)
    return F.kl_div(current, target, reduction="batchmean", log_target=True)


class UnlearnMethod:
    """Base: gradient ascent on the forget NLL; subclasses add or change terms."""

    name = "base"
    uses_retain = False
    uses_alternate = False  # True: the trainer also passes the forget questions with
    # `alternate_answers` (refusals) as `alternate`
    default_beta = 0.1
    options = MethodOptions()

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        """Hook for methods that need state from the starting model."""

    def forget_loss(self, model: PreTrainedModel, forget: QABatch) -> torch.Tensor:
        return -mean_answer_nll(model, forget)

    def alternate_answers(self, count: int) -> list[str]:
        raise NotImplementedError

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None,
        alternate: QABatch | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


@register_method("gradascent")
class GradAscent(UnlearnMethod):
    """Maximise the forget NLL; nothing holds the rest of the model in place."""

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None
    ) -> torch.Tensor:
        return self.forget_loss(model, forget)


@register_method("graddiff")
class GradDiff(UnlearnMethod):
    """gamma * forget term + alpha * retain term; forget term -NLL_forget, retain term
    NLL_retain or (retain_loss "kl") KL to the starting model on the retain batch."""

    uses_retain = True

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        self.beta = beta
        self.reference = _frozen_copy(model) if self._needs_reference() else None

    def _needs_reference(self) -> bool:
        return self.options.retain_loss == "kl"

    def retain_loss(self, model: PreTrainedModel, retain: QABatch) -> torch.Tensor:
        if self.options.retain_loss == "kl":
            assert self.reference is not None
            return retain_kl(model, self.reference, retain)
        return mean_answer_nll(model, retain)

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None,
        alternate: QABatch | None = None,
    ) -> torch.Tensor:
        loss = self.options.gamma * self.forget_loss_with(model, forget, alternate)
        if retain is not None:
            loss = loss + self.options.alpha * self.retain_loss(model, retain)
        return loss

    def forget_loss_with(
        self, model: PreTrainedModel, forget: QABatch, alternate: QABatch | None
    ) -> torch.Tensor:
        return self.forget_loss(model, forget)


@register_method("npo")
class NPO(GradDiff):
    """GradDiff with NPO's forget term against a frozen copy of the starting model:
    -(2/beta) log sigmoid(beta (NLL_theta - NLL_ref)), NLL summed over answer tokens."""

    def _needs_reference(self) -> bool:
        return True

    def forget_loss(self, model: PreTrainedModel, forget: QABatch) -> torch.Tensor:
        current, _ = answer_nll(model, forget)
        with torch.no_grad():
            reference, _ = answer_nll(self.reference, forget)
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * (current - reference)).mean()


@register_method("simnpo")
class SimNPO(GradDiff):
    """SimNPO (no reference model): -(2/beta) log sigmoid(beta (NLL_mean - delta)), NLL_mean
    the per-example mean over answer tokens; open-unlearning's defaults beta 4.5, delta 0
    (set gamma 0.125 for its TOFU configuration)."""

    default_beta = 4.5

    def forget_loss(self, model: PreTrainedModel, forget: QABatch) -> torch.Tensor:
        total, count = answer_nll(model, forget)
        mean = total / count.clamp(min=1) - self.options.delta
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * mean).mean()


# Refusals for IdkNLL / IdkDPO, in the spirit of TOFU's "I don't know" set (written here).
IDK_ANSWERS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is something I cannot answer.",
    "I am not aware of that.",
    "I can't say.",
    "I don't have that information.",
    "I'm unable to answer that question.",
)


class _Idk(GradDiff):
    """Pairs each forget question with a refusal drawn (seeded) from IDK_ANSWERS."""

    uses_alternate = True

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        super().prepare(model, beta)
        self.generator = torch.Generator().manual_seed(self.options.seed)

    def alternate_answers(self, count: int) -> list[str]:
        picks = torch.randint(len(IDK_ANSWERS), (count,), generator=self.generator).tolist()
        return [IDK_ANSWERS[i] for i in picks]


@register_method("idknll")
class IdkNLL(_Idk):
    """TOFU's IDK fine-tuning: NLL of a refusal to each forget question (+ retain term)."""

    def forget_loss_with(
        self, model: PreTrainedModel, forget: QABatch, alternate: QABatch | None
    ) -> torch.Tensor:
        assert alternate is not None
        return mean_answer_nll(model, alternate)


@register_method("idkdpo")
class IdkDPO(_Idk):
    """DPO with the refusal preferred over the forget answer, against the starting model:
    -(2/beta) log sigmoid(beta ((r_win) - (r_lose))), r = -(NLL_theta - NLL_ref) summed over
    answer tokens; beta 0.1 (+ retain term)."""

    def _needs_reference(self) -> bool:
        return True

    def forget_loss_with(
        self, model: PreTrainedModel, forget: QABatch, alternate: QABatch | None
    ) -> torch.Tensor:
        assert alternate is not None and self.reference is not None
        win, _ = answer_nll(model, alternate)
        lose, _ = answer_nll(model, forget)
        with torch.no_grad():
            win_ref, _ = answer_nll(self.reference, alternate)
            lose_ref, _ = answer_nll(self.reference, forget)
        margin = -(win - win_ref) + (lose - lose_ref)
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * margin).mean()


@register_method("rmu")
class RMU(GradDiff):
    """Representation misdirection: at one layer, push the forget answers' hidden states
    towards a fixed random direction of length `steering` and hold the retain answers'
    hidden states at the frozen starting model's; gamma * forget MSE + alpha * retain MSE.
    Each MSE is open-unlearning's: per example the mean over answer tokens of the mean over
    hidden units of the squared difference, then the mean over examples.
    `rmu_layer` L hooks the output of decoder block L (open-unlearning's `model.layers.L`;
    HF's hidden_states[L + 1]); by default block n_layers // 2 - 1 (at least 0)."""

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        self.reference = _frozen_copy(model)
        blocks = model.config.num_hidden_layers
        layer = self.options.rmu_layer
        if layer is None:
            layer = max(1, blocks // 2) - 1
        if not 0 <= layer < blocks:
            raise Pv4fadError(f"--rmu-layer must be in [0, {blocks - 1}], got {layer}")
        self.layer = layer + 1
        direction = torch.rand(model.config.hidden_size)
        device = next(model.parameters()).device
        self.control = (self.options.steering * direction / direction.norm()).to(device)

    def _hidden(self, model: PreTrainedModel, batch: QABatch) -> torch.Tensor:
        out = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            output_hidden_states=True,
        )
        return out.hidden_states[self.layer].float()

    @staticmethod
    def activation_loss(hidden: torch.Tensor, target: torch.Tensor,
                        batch: QABatch) -> torch.Tensor:
        mask = (batch.labels != IGNORE).float()
        per_token = (hidden - target).pow(2).mean(dim=-1)
        return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None,
        alternate: QABatch | None = None,
    ) -> torch.Tensor:
        hidden = self._hidden(model, forget)
        loss = self.options.gamma * self.activation_loss(
            hidden, self.control.expand_as(hidden), forget
        )
        if retain is not None:
            with torch.no_grad():
                target = self._hidden(self.reference, retain)
            loss = loss + self.options.alpha * self.activation_loss(
                self._hidden(model, retain), target, retain
            )
        return loss
