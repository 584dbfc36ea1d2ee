"""MAP's dual on a reward matrix: value, gradient, Hessian and the tilted sample weights.

For samples r_j ~ p0 and a palette c, the aligned policy is p_lambda ∝ p0 exp(lambda . r),
lambda >= 0 maximising the concave dual

    g(lambda) = lambda . c - sum_x pi_x log mean_{j in x} exp(lambda . r_j).

`pooled` normalisation puts every sample in one group (pi = 1): the MAP paper's
g(lambda) = -log mean_j exp(lambda . r_j) + lambda . c. `per-prompt` normalisation groups
the samples by prompt (pi_x = 1 / number of prompts): the exact dual of the conditional
problem min E_x KL(p(.|x) || p0(.|x)) s.t. E_x E_p[r] >= c, which is what decoding by
resampling each prompt's continuations realises.

Everything here works in standardised units z = (r - mean) / sd, in which g is the same
function of lambda_z = lambda * sd (the means cancel), so tolerances are in standard
deviations and Newton steps are well scaled whatever the rewards' units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALISATIONS = ("pooled", "per-prompt")


@dataclass(frozen=True)
class DualProblem:
    """Standardised rewards sorted by group, and the palette in the same units."""

    z: np.ndarray  # [n, k] standardised rewards, rows sorted by group
    target: np.ndarray  # [k] palette in standardised units
    mean: np.ndarray  # [k] reward means (raw units)
    scale: np.ndarray  # [k] reward standard deviations (1 where a value is constant)
    starts: np.ndarray  # [G] first row of each group
    group_weight: np.ndarray  # [G] pi_x, summing to 1
    order: np.ndarray  # [n] rows of the caller's matrix in sorted order

    @classmethod
    def build(
        cls, rewards: np.ndarray, palette: np.ndarray, groups: np.ndarray | None = None
    ) -> DualProblem:
        rewards = np.asarray(rewards, dtype=np.float64)
        if groups is None:
            groups = np.zeros(len(rewards), dtype=np.int64)
        order = np.argsort(groups, kind="stable")
        sorted_groups = np.asarray(groups)[order]
        starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
        mean = rewards.mean(axis=0)
        scale = rewards.std(axis=0)
        scale[scale == 0] = 1.0
        z = (rewards[order] - mean) / scale
        weight = np.full(len(starts), 1.0 / len(starts))
        return cls(z, (np.asarray(palette, dtype=np.float64) - mean) / scale, mean, scale,
                   starts, weight, order)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(np.r_[self.starts, len(self.z)])

    def group_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts)), self.sizes)

    def to_raw_lambda(self, lam_z: np.ndarray) -> np.ndarray:
        return lam_z / self.scale

    def to_z_lambda(self, lam: np.ndarray) -> np.ndarray:
        return np.asarray(lam, dtype=np.float64) * self.scale

    def to_raw_levels(self, levels_z: np.ndarray) -> np.ndarray:
        return levels_z * self.scale + self.mean

    def reachable_bound(self) -> np.ndarray:
        """Per value, the largest level any reweighting of the samples reaches (z units):
        the pi-weighted mean of each group's largest reward."""
        per_group = np.maximum.reduceat(self.z, self.starts, axis=0)
        return self.group_weight @ per_group


@dataclass(frozen=True)
class Tilt:
    """p_lambda on the samples: self-normalised weights and what they imply."""

    weights: np.ndarray  # [n] summing to 1 (pi_x times the within-group softmax)
    log_normaliser: float  # sum_x pi_x log mean_{j in x} exp(lambda . z_j)
    levels: np.ndarray  # [k] E_{p_lambda}[z]
    group_levels: np.ndarray  # [G, k] sum_{j in x} w_j z_j (pi_x times the group mean)

    def kl(self, lam_z: np.ndarray) -> float:
        """KL(p_lambda || p0) estimated on the samples: lambda . E[z] - log normaliser."""
        return float(max(lam_z @ self.levels - self.log_normaliser, 0.0))

    def ess(self) -> float:
        """Effective sample size 1 / sum w^2 (n when lambda = 0)."""
        return float(1.0 / np.sum(self.weights**2))

    def level_se(self, z: np.ndarray, group_weight: np.ndarray) -> np.ndarray:
        """Standard error of the level estimates (z units). Pooled: the delta method for
        self-normalised weights. Per prompt: the prompts' tilted means are independent, so
        their spread over the square root of their number."""
        if len(group_weight) == 1:
            return np.sqrt(np.sum(self.weights[:, None] ** 2 * (z - self.levels) ** 2, axis=0))
        per_prompt = self.group_levels / group_weight[:, None]
        return per_prompt.std(axis=0, ddof=1) / np.sqrt(len(group_weight))


def tilt(problem: DualProblem, lam_z: np.ndarray) -> Tilt:
    scores = problem.z @ lam_z
    peak = np.maximum.reduceat(scores, problem.starts)
    row_group = problem.group_of_row()
    exp = np.exp(scores - peak[row_group])
    total = np.add.reduceat(exp, problem.starts)
    log_mean = peak + np.log(total) - np.log(problem.sizes)
    weights = exp * (problem.group_weight / total)[row_group]
    group_levels = np.add.reduceat(weights[:, None] * problem.z, problem.starts, axis=0)
    return Tilt(weights, float(problem.group_weight @ log_mean), group_levels.sum(axis=0),
                group_levels)


def dual_value(problem: DualProblem, lam_z: np.ndarray, state: Tilt | None = None) -> float:
    state = state or tilt(problem, lam_z)
    return float(lam_z @ problem.target - state.log_normaliser)


def dual_gradient(problem: DualProblem, state: Tilt) -> np.ndarray:
    """dg/dlambda = c - E_{p_lambda}[r]: how far each level falls short of its target."""
    return problem.target - state.levels


def dual_hessian(problem: DualProblem, state: Tilt) -> np.ndarray:
    """-sum_x pi_x Cov_{p_lambda(.|x)}[z]: negative semi-definite (g is concave)."""
    second = (problem.z * state.weights[:, None]).T @ problem.z
    between = (state.group_levels / problem.group_weight[:, None]).T @ state.group_levels
    return -(second - between)
