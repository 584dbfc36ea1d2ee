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
from llm_modules.unlearning.data import QABatch
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
