"""Feasibility of a palette, with its reason, and the largest feasible step along a
direction (automatic palette adjustment).

On the samples, a palette c is reachable when some reweighting of each prompt's samples
has expected rewards >= c, i.e. c is dominated by a point of the (pi-weighted sum of the
prompts') convex hull of the sampled rewards. When it is not, a separating direction
d >= 0 exists with d . c > sum_x pi_x max_{j in x} d . r_j, and along lambda = s d the dual
grows at least like s times that margin: it is unbounded. `separate` finds the direction
with the largest margin by a linear program; `largest_step` finds how far c can move along
a direction before leaving the reachable set, by another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from llm_modules.alignment.map.dual import DualProblem

BOUNDARY = 1e-9  # margins within this many standard deviations of 0: on the hull boundary


@dataclass(frozen=True)
class Verdict:
    """Whether a palette is achievable, the reason in words, and the certificate."""

    feasible: bool
    status: str  # feasible | outside-hull | on-boundary | undecided
    reason: str
    direction: tuple[float, ...] | None = None  # separating direction (standardised units)
    margin: float | None = None  # in standard deviations

    def to_json(self) -> dict[str, Any]:
        return {"feasible": self.feasible, "status": self.status, "reason": self.reason,
                "direction": None if self.direction is None else list(self.direction),
                "margin": self.margin}

    @classmethod
    def attained(cls, iterations: int, norm: float, tol: float) -> Verdict:
        return cls(True, "feasible",
                   f"the dual attains its maximum at a finite lambda ({iterations} Newton "
                   f"iterations, largest level gap {norm:.1e} sd <= tolerance {tol:.0e}): "
                   "the tilted samples meet every level")

    @classmethod
    def undecided(cls, iterations: int, norm: float, margin: float) -> Verdict:
        return cls(False, "undecided",
                   f"the solver stopped after {iterations} iterations with a level gap of "
                   f"{norm:.1e} sd although the palette is inside the hull by {-margin:.2g} "
                   "sd: it is reachable only with nearly all weight on a few samples (raise "
                   "--max-iter, or lower the levels)", margin=margin)


def separate(problem: DualProblem) -> tuple[float, np.ndarray]:
    """(margin, direction d on the simplex) maximising d . c - sum_x pi_x max_{j in x} d . z_j
    in standardised units. A positive margin proves the palette unreachable."""
    n, k = problem.z.shape
    groups = len(problem.starts)
    membership = sparse.csr_matrix(
        (np.ones(n), (np.arange(n), problem.group_of_row())), shape=(n, groups)
    )
    # Variables [d (k), t (groups)]: t_x >= d . z_j for every sample j of prompt x.
    a_ub = sparse.hstack([sparse.csr_matrix(problem.z), -membership]).tocsr()
    objective = np.r_[-problem.target, problem.group_weight]
    result = linprog(
        objective, A_ub=a_ub, b_ub=np.zeros(n), A_eq=np.r_[np.ones(k), np.zeros(groups)][None],
        b_eq=[1.0], bounds=[(0, None)] * k + [(None, None)] * groups, method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"feasibility linear program failed: {result.message}")
    return float(-result.fun), np.clip(result.x[:k], 0.0, None)


def _describe(direction: np.ndarray, values: tuple[str, ...]) -> str:
    parts = [f"{w:.2f} {name}" for w, name in zip(direction, values, strict=True) if w > 1e-3]
    return " + ".join(parts)


def infeasible_verdict(
    problem: DualProblem, values: tuple[str, ...], per_value_only: bool = False
) -> Verdict | None:
    """The reason the palette cannot be reached, or None when it can. The per-value check
    is cheap; the joint one solves `separate`."""
    bound = problem.reachable_bound()
    gap = problem.target - bound
    worst = int(np.argmax(gap))
    raw_target = problem.to_raw_levels(problem.target)[worst]
    raw_bound = problem.to_raw_levels(bound)[worst]
    best = ("the largest reward any sample has on it" if len(problem.starts) == 1 else
            "the most any reweighting of each prompt's samples reaches on it (the mean over "
            "prompts of each prompt's best sample)")
    if gap[worst] > BOUNDARY:
        return Verdict(False, "outside-hull",
                       f"the level for {values[worst]!r} ({raw_target:.4g}) exceeds {best} "
                       f"({raw_bound:.4g}): c is outside the convex hull of the sampled rewards "
                       f"and the dual grows without bound as lambda_{values[worst]} grows",
                       tuple(np.eye(len(values))[worst]), float(gap[worst]))
    if gap[worst] >= -BOUNDARY:
        return Verdict(False, "on-boundary",
                       f"the level for {values[worst]!r} ({raw_target:.4g}) equals {best}: "
                       "reachable only in the limit lambda -> infinity (the dual's supremum "
                       "is not attained)", tuple(np.eye(len(values))[worst]), float(gap[worst]))
    if per_value_only:
        return None
    margin, direction = separate(problem)
    if margin < -BOUNDARY:
        return None
    combination = _describe(direction, values)
    if margin <= BOUNDARY:
        return Verdict(False, "on-boundary",
                       f"c lies on the boundary of the convex hull of the sampled rewards along "
                       f"{combination}: reachable only as lambda -> infinity",
                       tuple(direction), margin)
    return Verdict(False, "outside-hull",
                   f"no reweighting of the samples reaches all levels together: on the "
                   f"combination {combination} (standardised rewards) the palette asks "
                   f"{margin:.3g} sd more than the best sample gives, so c is outside the "
                   f"convex hull of the sampled rewards and the dual grows without bound along "
                   "lambda in that direction", tuple(direction), margin)


def stopped_short_verdict(
    problem: DualProblem, values: tuple[str, ...], iterations: int, gap: float
) -> Verdict:
    """For a solver that stopped before the tolerance: why the palette is unreachable, or,
    when it is reachable after all, that the solver could not finish."""
    verdict = infeasible_verdict(problem, values)
    if verdict is not None:
        return verdict
    margin, _ = separate(problem)
    return Verdict.undecided(iterations, gap, margin)


def largest_step(
    problem: DualProblem, direction: np.ndarray, upper: float
) -> float | None:
    """The largest t <= `upper` with c + t * direction reachable (`direction` in raw
    reward units), or None when even c itself is not. Exact on the samples: a linear
    program over the weights of every sample."""
    n, k = problem.z.shape
    step = np.asarray(direction, dtype=np.float64) / problem.scale
    pi_row = problem.group_weight[problem.group_of_row()]
    # Variables [w (n), t]: levels sum_j pi_x(j) w_j z_j >= target + t * step, each prompt's
    # w on its simplex.
    a_ub = np.hstack([-(problem.z * pi_row[:, None]).T, step[:, None]])
    membership = sparse.csr_matrix(
        (np.ones(n), (problem.group_of_row(), np.arange(n))), shape=(len(problem.starts), n + 1)
    )
    result = linprog(
        np.r_[np.zeros(n), -1.0], A_ub=a_ub, b_ub=-problem.target, A_eq=membership,
        b_eq=np.ones(len(problem.starts)), bounds=[(0, None)] * n + [(None, upper)],
        method="highs",
    )
    if result.status == 2:
        return None
    if result.status != 0:
        raise RuntimeError(f"palette-adjustment linear program failed: {result.message}")
    return float(result.x[-1]) if result.x[-1] >= 0 else None
