"""SPUNGE: split the forget set by an attribute, unlearn each subset from the same start,
merge the resulting models (TIES or task arithmetic) back onto the start."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError, Pv4fadError
from llm_modules.unlearning.data import Fact
from llm_modules.unlearning.trainer import Mask, UnlearnConfig, unlearn

TaskVector = dict[str, torch.Tensor]  # parameter name -> theta_t - theta_0
MERGES = ("ties", "task-arithmetic")
# How long each subset is unlearned. "epochs": the config's epochs over the subset, so every
# fact is visited as often as in a dense run, but a subset takes fewer optimiser steps (8/4/4
# facts at batch 8: 10 steps each against the dense run's 20). "steps": each subset gets the
# dense run's number of optimiser steps on the whole forget set (its facts visited more often).
BUDGETS = ("epochs", "steps")


def subset_config(config: UnlearnConfig, n_forget: int, budget: str) -> UnlearnConfig:
    """The config each subset is unlearned with under `budget` (n_forget: the whole set)."""
    if budget == "epochs":
        return config
    if budget == "steps":
        return replace(config, max_steps=config.steps_for(n_forget))
    raise Pv4fadError(f"unknown SPUNGE budget {budget!r} (expected one of {BUDGETS})")


def split_by_attribute(facts: Sequence[Fact], attribute: str) -> dict[str, list[Fact]]:
    """Forget subsets keyed by the attribute's value, in sorted key order."""
    groups: dict[str, list[Fact]] = {}
    for i, fact in enumerate(facts):
        if attribute not in fact.attributes:
            raise DataError(f"forget fact {i} has no attribute {attribute!r} to split on")
        groups.setdefault(fact.attributes[attribute], []).append(fact)
    return dict(sorted(groups.items()))


def parameter_state(model: PreTrainedModel) -> TaskVector:
    """A detached float32 copy of the trainable parameters."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def task_vector(start: TaskVector, model: PreTrainedModel) -> TaskVector:
    return {n: p.detach().float() - start[n] for n, p in model.named_parameters() if n in start}


def trim_task_vector(vector: TaskVector, keep: float = 0.2) -> TaskVector:
    """TIES step 1: keep the top `keep` fraction of entries by magnitude, zero the rest."""
    if not 0.0 < keep <= 1.0:
        raise Pv4fadError(f"TIES keep fraction must be in (0, 1], got {keep}")
    flat = torch.cat([v.flatten().abs() for v in vector.values()])
    count = max(1, round(keep * flat.numel()))
    threshold = torch.topk(flat, count, sorted=True).values[-1]
    return {n: torch.where(v.abs() >= threshold, v, torch.zeros_like(v)) for n, v in vector.items()}


def elect_and_merge(trimmed: Sequence[TaskVector]) -> TaskVector:
    """TIES steps 2-3: elect each entry's sign from the summed trimmed vectors, then average
    only the entries that agree with it (disjoint mean)."""
    merged = {}
    for name in trimmed[0]:
        stacked = torch.stack([vector[name] for vector in trimmed])
        sign = torch.sign(stacked.sum(dim=0))
        agrees = (torch.sign(stacked) == sign) & (stacked != 0)
        count = agrees.sum(dim=0).clamp(min=1)
        merged[name] = (stacked * agrees).sum(dim=0) / count
    return merged


def ties_merge(vectors: Sequence[TaskVector], keep: float = 0.2) -> TaskVector:
    return elect_and_merge([trim_task_vector(v, keep) for v in vectors])


def task_arithmetic(vectors: Sequence[TaskVector]) -> TaskVector:
    return {name: sum(v[name] for v in vectors) for name in vectors[0]}


def apply_task_vector(
    model: PreTrainedModel, start: TaskVector, vector: TaskVector, scale: float = 1.0
) -> PreTrainedModel:
    """Set the model's weights to start + scale * vector."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in start:
                param.copy_((start[name] + scale * vector[name]).to(param.dtype))
    return model


def merge_vectors(vectors: Sequence[TaskVector], merge: str, keep: float) -> TaskVector:
    if merge == "ties":
        return ties_merge(vectors, keep)
    if merge == "task-arithmetic":
        return task_arithmetic(vectors)
    raise Pv4fadError(f"unknown merge {merge!r} (expected one of {MERGES})")


def subset_task_vectors(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    subsets: dict[str, list[Fact]],
    retain: Sequence[Fact],
    config: UnlearnConfig,
    mask_for: Callable[[PreTrainedModel, list[Fact]], Mask] | None = None,
) -> dict[str, TaskVector]:
    """Unlearn each subset from the same starting weights; the model is left unchanged."""
    start = parameter_state(model)
    vectors = {}
    for value, subset in subsets.items():
        worker = copy.deepcopy(model)
        mask = mask_for(worker, subset) if mask_for is not None else None
        unlearn(worker, tokenizer, subset, retain, config, mask=mask)
        vectors[value] = task_vector(start, worker)
    return vectors


def spunge(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: Sequence[Fact],
    retain: Sequence[Fact],
    config: UnlearnConfig,
    attribute: str,
    merge: str = "ties",
    keep: float = 0.2,
    scale: float = 1.0,
    mask_for: Callable[[PreTrainedModel, list[Fact]], Mask] | None = None,
    budget: str = "epochs",
) -> PreTrainedModel:
    """Split-unlearn-merge; returns `model` set to start + scale * merged task vector.
    `budget` sets each subset's training length (see BUDGETS)."""
    subsets = split_by_attribute(forget, attribute)
    start = parameter_state(model)
    config = subset_config(config, len(forget), budget)
    vectors = subset_task_vectors(model, tokenizer, subsets, retain, config, mask_for)
    merged = merge_vectors(list(vectors.values()), merge, keep)
    return apply_task_vector(model, start, merged, scale)
