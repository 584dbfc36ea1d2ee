"""Unlearning objectives: each method is a small class overriding `compute_loss`.

The shared loop (`trainer.unlearn`) calls `compute_loss(model, forget, retain)` once per step.
A new method is a new subclass plus `@register_method("name")`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

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


def make_method(name: str, model: PreTrainedModel, beta: float = 0.1) -> UnlearnMethod:
    """The method called `name`, prepared for `model` (NPO freezes a reference copy)."""
    if name not in METHODS:
        raise Pv4fadError(f"unknown unlearning method {name!r} (expected one of {sorted(METHODS)})")
    method = METHODS[name]()
    method.prepare(model, beta=beta)
    return method


class UnlearnMethod:
    """Base: gradient ascent on the forget NLL; subclasses add or change terms."""

    name = "base"
    uses_retain = False

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        """Hook for methods that need state from the starting model."""

    def forget_loss(self, model: PreTrainedModel, forget: QABatch) -> torch.Tensor:
        return -mean_answer_nll(model, forget)

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None
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
    """Forget NLL ascent plus retain NLL descent: -NLL_forget + NLL_retain."""

    uses_retain = True

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None
    ) -> torch.Tensor:
        loss = self.forget_loss(model, forget)
        if retain is not None:
            loss = loss + mean_answer_nll(model, retain)
        return loss


@register_method("npo")
class NPO(GradDiff):
    """GradDiff with NPO's forget term against a frozen copy of the starting model:
    -(2/beta) log sigmoid(beta (NLL_theta - NLL_ref)), NLL summed over answer tokens."""

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        self.beta = beta
        self.reference = copy.deepcopy(model).eval()
        for param in self.reference.parameters():
            param.requires_grad_(False)

    def forget_loss(self, model: PreTrainedModel, forget: QABatch) -> torch.Tensor:
        current, _ = answer_nll(model, forget)
        with torch.no_grad():
            reference, _ = answer_nll(self.reference, forget)
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * (current - reference)).mean()


@register_method("rmu")
class RMU(GradDiff):
    """Representation misdirection: at a middle layer, push the forget answers' hidden states
    towards a fixed random direction (length `steering`) and hold the retain answers' hidden
    states at the frozen starting model's (weight `alpha`); mean squared errors."""

    steering = 20.0
    alpha = 1.0

    def prepare(self, model: PreTrainedModel, beta: float) -> None:
        self.reference = copy.deepcopy(model).eval()
        for param in self.reference.parameters():
            param.requires_grad_(False)
        self.layer = max(1, model.config.num_hidden_layers // 2)
        direction = torch.rand(model.config.hidden_size)
        device = next(model.parameters()).device
        self.control = (self.steering * direction / direction.norm()).to(device)

    def _hidden(self, model: PreTrainedModel, batch: QABatch) -> torch.Tensor:
        out = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            output_hidden_states=True,
        )
        return out.hidden_states[self.layer].float()[batch.labels != IGNORE]

    def compute_loss(
        self, model: PreTrainedModel, forget: QABatch, retain: QABatch | None
    ) -> torch.Tensor:
        hidden = self._hidden(model, forget)
        loss = F.mse_loss(hidden, self.control.expand_as(hidden))
        if retain is not None:
            with torch.no_grad():
                target = self._hidden(self.reference, retain)
            loss = loss + self.alpha * F.mse_loss(self._hidden(model, retain), target)
        return loss
