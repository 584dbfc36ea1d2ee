"""Realising the aligned model by decoding, and measuring any realisation against c.

Decoding: for each fresh prompt draw m continuations from p0 and keep one, drawn with
probabilities softmax(lambda . r) over the m (importance resampling). As m grows this
samples p_lambda; at a given m it samples exactly what the `per-prompt` dual with m
samples per prompt solves for. Every realisation is measured on fresh generations: each
value's mean over prompts with a 95 % interval (prompts are the independent units).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_modules.alignment.map.rewards import ValueScorer, score_all
from llm_modules.alignment.map.sampling import GenerationSettings, generate

Z95 = 1.959964


@dataclass(frozen=True)
class LevelEstimate:
    """Each value's mean on fresh generations, its standard error and the target."""

    values: tuple[str, ...]
    mean: np.ndarray
    se: np.ndarray
    target: np.ndarray | None = None

    @property
    def reached(self) -> np.ndarray | None:
        """Target within reach: c_i <= mean_i + 1.96 se_i (not significantly short)."""
        return None if self.target is None else self.target <= self.mean + Z95 * self.se

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": list(self.values), "mean": self.mean.tolist(),
                               "ci95": (Z95 * self.se).tolist()}
        if self.target is not None:
            out["target"] = self.target.tolist()
            out["reached"] = [bool(v) for v in self.reached]
            out["all_reached"] = bool(np.all(self.reached))
        return out


def estimate_levels(
    rewards: np.ndarray, groups: np.ndarray, values: tuple[str, ...],
    target: np.ndarray | None = None,
) -> LevelEstimate:
    """Mean over prompts of each prompt's mean reward, with its standard error."""
    keys, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(keys), rewards.shape[1]))
    np.add.at(sums, inverse, rewards)
    per_prompt = sums / np.bincount(inverse)[:, None]
    se = per_prompt.std(axis=0, ddof=1) / np.sqrt(len(keys)) if len(keys) > 1 else \
        np.full(rewards.shape[1], np.inf)
    return LevelEstimate(values, per_prompt.mean(axis=0), se, target)


def importance_resample(
    rewards: np.ndarray, groups: np.ndarray, lam: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One row per group, drawn with probabilities softmax(lambda . r) within the group."""
    chosen = []
    scores = rewards @ lam
    for key in np.unique(groups):
        rows = np.flatnonzero(groups == key)
        logits = scores[rows] - scores[rows].max()
        weights = np.exp(logits) / np.exp(logits).sum()
        chosen.append(rows[rng.choice(len(rows), p=weights)])
    return np.asarray(chosen)


@dataclass(frozen=True)
class Candidates:
    """m fresh continuations per prompt from p0 and their rewards."""

    prompts: tuple[str, ...]
    groups: np.ndarray
    continuations: tuple[str, ...]
    rewards: np.ndarray


def fresh_candidates(
    model: Any, tokenizer: Any, prompts: Sequence[str], scorers: Sequence[ValueScorer],
    settings: GenerationSettings, log: Callable[[str], None] = lambda _m: None,
) -> Candidates:
    indices, texts = generate(model, tokenizer, prompts, settings, log)
    rewards = score_all(scorers, [prompts[i] for i in indices], texts, log=log)
    return Candidates(tuple(prompts), np.asarray(indices), tuple(texts), rewards)


def decode_realisation(
    candidates: Candidates, lam: np.ndarray, values: tuple[str, ...], target: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, LevelEstimate, LevelEstimate]:
    """(chosen rows, levels before = p0 on the candidates, levels after resampling)."""
    rng = np.random.default_rng(seed)
    chosen = importance_resample(candidates.rewards, candidates.groups, lam, rng)
    before = estimate_levels(candidates.rewards, candidates.groups, values, target)
    after = estimate_levels(candidates.rewards[chosen], candidates.groups[chosen], values,
                            target)
    return chosen, before, after
