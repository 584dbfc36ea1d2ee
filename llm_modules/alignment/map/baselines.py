"""Baselines MAP is measured against: sequential alignment and random lambdas.

Sequential alignment aligns one value at a time, cyclically: step i re-aligns the current
model to value i alone (its other lambdas frozen), which is exact coordinate ascent on the
dual. One round is what aligning to each value in turn gives; more rounds converge to MAP.
Random lambdas show what weighting the values by hand gives: most miss the palette, and
those that meet it pay more KL than MAP (MAP is the smallest-KL distribution meeting it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_modules.alignment.map.dual import DualProblem, tilt
from llm_modules.alignment.map.solver import PaletteSolution

MEET_TOL = 1e-3  # a level counts as met if at most this many standard deviations short


def _coordinate(problem: DualProblem, lam_z: np.ndarray, index: int, tol: float) -> float:
    """argmax over lambda_i >= 0 of the dual, the others fixed: the root of the decreasing
    derivative c_i - E[z_i], bracketed then found by safeguarded Newton."""

    def slope_and_curvature(value: float) -> tuple[float, float]:
        trial = lam_z.copy()
        trial[index] = value
        state = tilt(problem, trial)
        variance = state.weights @ problem.z[:, index] ** 2 - np.sum(
            state.group_levels[:, index] ** 2 / problem.group_weight)
        return problem.target[index] - state.levels[index], max(variance, 0.0)

    slope, curvature = slope_and_curvature(0.0)
    if slope <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while slope_and_curvature(high)[0] > 0:
        low, high = high, 2 * high
        if high > 1e6:
            return high  # only reachable in the limit: the level is at the sample maximum
    value = (low + high) / 2
    for _ in range(200):
        slope, curvature = slope_and_curvature(value)
        if abs(slope) <= tol:
            break
        low, high = (value, high) if slope > 0 else (low, value)
        newton = value + slope / curvature if curvature > 0 else np.inf
        value = newton if low < newton < high else (low + high) / 2
    return value


@dataclass(frozen=True)
class RoundResult:
    round: int
    lam: np.ndarray
    levels: np.ndarray
    kl: float
    missed: tuple[str, ...]  # values whose level is short of the palette after this round
    shortfall: np.ndarray  # max(c - level, 0), raw units


def sequential_alignment(
    problem: DualProblem, values: tuple[str, ...], rounds: int, tol: float = 1e-10
) -> list[RoundResult]:
    """Cyclic one-value-at-a-time alignment, reported after every round."""
    lam_z = np.zeros(len(values))
    results = []
    for round_index in range(1, rounds + 1):
        for index in range(len(values)):
            lam_z[index] = _coordinate(problem, lam_z, index, tol)
        state = tilt(problem, lam_z)
        short = np.maximum(problem.target - state.levels, 0.0)
        results.append(RoundResult(
            round_index, problem.to_raw_lambda(lam_z), problem.to_raw_levels(state.levels),
            state.kl(lam_z), tuple(v for v, s in zip(values, short, strict=True)
                                   if s > MEET_TOL), short * problem.scale,
        ))
    return results


def sequential_gap(results: list[RoundResult], solution: PaletteSolution) -> list[dict]:
    """Each round against MAP: lambda distance, KL difference, levels missed."""
    rows = []
    for result in results:
        assert solution.lam is not None and solution.kl is not None
        scale = max(float(np.linalg.norm(solution.lam)), 1e-12)
        rows.append({
            "round": result.round,
            "lambda": result.lam.tolist(),
            "levels": result.levels.tolist(),
            "kl": result.kl,
            "missed": list(result.missed),
            "shortfall": result.shortfall.tolist(),
            "lambda_gap_relative": float(np.linalg.norm(result.lam - solution.lam) / scale),
            "kl_minus_map": result.kl - solution.kl,
        })
    return rows


def random_lambda_baseline(
    problem: DualProblem, solution: PaletteSolution, count: int, seed: int
) -> dict[str, Any]:
    """`count` lambdas drawn uniformly in [0, 2 max lambda*_z]^k (standardised units):
    how many meet the palette, and the KL those that do pay against MAP's."""
    assert solution.lam is not None and solution.kl is not None
    rng = np.random.default_rng(seed)
    top = 2 * max(float(np.max(problem.to_z_lambda(solution.lam))), 0.5)
    meeting_kl, missed_counts = [], []
    for lam_z in rng.uniform(0.0, top, size=(count, problem.z.shape[1])):
        state = tilt(problem, lam_z)
        missed = int(np.sum(problem.target - state.levels > MEET_TOL))
        missed_counts.append(missed)
        if missed == 0:
            meeting_kl.append(state.kl(lam_z))
    return {
        "count": count,
        "range_z": top,
        "share_meeting": len(meeting_kl) / count,
        "mean_values_missed": float(np.mean(missed_counts)),
        "map_kl": solution.kl,
        "min_kl_meeting": min(meeting_kl) if meeting_kl else None,
        "median_kl_meeting": float(np.median(meeting_kl)) if meeting_kl else None,
    }
