"""The palette solver: maximise MAP's dual to a tolerance and say whether the palette is
achievable, and why not when it is not.

Projected Newton on lambda >= 0 with an Armijo line search, run until the projected
gradient (how far each level is from its target, in reward standard deviations) is below
`tol`. Newton converges quadratically near the optimum, so the tolerance is reached in a
few tens of iterations whatever it is. A palette is feasible when the dual has a finite
maximiser; then the tilted sample distribution meets every level. Otherwise c lies outside
the convex hull of the sampled rewards (less what is dominated), the dual is unbounded,
and `feasibility.separate` finds the direction along which it grows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_modules.alignment.map.dual import (
    DualProblem,
    Tilt,
    dual_gradient,
    dual_hessian,
    dual_value,
    tilt,
)
from llm_modules.alignment.map.feasibility import (
    Verdict,
    infeasible_verdict,
    stopped_short_verdict,
)

DIVERGED = 1e3  # |lambda_z| past this: weights sit on the single extreme sample


@dataclass(frozen=True)
class SolverSettings:
    tol: float = 1e-9  # largest projected gradient, in standard deviations
    max_iter: int = 200


@dataclass(frozen=True)
class PaletteSolution:
    """lambda, the realised levels E_{p_lambda}[r] (self-normalised importance weights),
    KL(p_lambda || p0), the effective sample size and the feasibility verdict."""

    values: tuple[str, ...]
    palette: np.ndarray
    verdict: Verdict
    reference_levels: np.ndarray  # E_{p0}[r]
    lam: np.ndarray | None = None  # None when the palette is infeasible
    levels: np.ndarray | None = None
    level_se: np.ndarray | None = None
    kl: float | None = None
    ess: float | None = None
    dual_value: float | None = None
    iterations: int = 0
    gradient_norm: float | None = None
    samples: int = 0
    normalise: str = "pooled"
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.verdict.feasible

    def to_json(self) -> dict[str, Any]:
        def listed(array: np.ndarray | None) -> list[float] | None:
            return None if array is None else [float(v) for v in array]

        return {
            "values": list(self.values),
            "palette": listed(self.palette),
            "feasible": self.feasible,
            "verdict": self.verdict.to_json(),
            "lambda": listed(self.lam),
            "levels": listed(self.levels),
            "levels_ci95": listed(None if self.level_se is None else 1.96 * self.level_se),
            "reference_levels": listed(self.reference_levels),
            "kl": self.kl,
            "ess": self.ess,
            "dual_value": self.dual_value,
            "iterations": self.iterations,
            "gradient_norm": self.gradient_norm,
            "samples": self.samples,
            "normalise": self.normalise,
            "seconds": self.seconds,
            **self.extra,
        }


def projected_gradient(lam_z: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """The gradient with the components that would push lambda below 0 removed."""
    return np.where(lam_z > 0, gradient, np.maximum(gradient, 0.0))


def newton_step(lam_z: np.ndarray, gradient: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Ascent direction: Newton on the free coordinates, none on those held at 0."""
    free = (lam_z > 0) | (gradient > 0)
    step = np.zeros_like(lam_z)
    if not free.any():
        return step
    curvature = -hessian[np.ix_(free, free)]
    # A value constant over the samples (or collinear with others) makes it singular.
    ridge = 1e-12 * max(np.trace(curvature), 1e-300)
    step[free] = np.linalg.solve(curvature + ridge * np.eye(free.sum()), gradient[free])
    return step


def line_search(
    problem: DualProblem, lam_z: np.ndarray, value: float, gradient: np.ndarray,
    step: np.ndarray,
) -> tuple[np.ndarray, Tilt, float]:
    """Projected Armijo backtracking from the full Newton step."""
    size = 1.0
    for _ in range(60):
        candidate = np.maximum(lam_z + size * step, 0.0)
        state = tilt(problem, candidate)
        new_value = dual_value(problem, candidate, state)
        if new_value >= value + 1e-4 * gradient @ (candidate - lam_z):
            return candidate, state, new_value
        size /= 2
    state = tilt(problem, lam_z)
    return lam_z, state, value


def maximise_dual(
    problem: DualProblem, settings: SolverSettings
) -> tuple[np.ndarray, Tilt, int, float, bool]:
    """(lambda_z, tilt, iterations, projected-gradient norm, converged), from lambda = 0."""
    lam_z = np.zeros(problem.z.shape[1])
    state = tilt(problem, lam_z)
    value = dual_value(problem, lam_z, state)
    norm = np.inf
    for iteration in range(settings.max_iter + 1):
        gradient = dual_gradient(problem, state)
        norm = float(np.max(np.abs(projected_gradient(lam_z, gradient))))
        if norm <= settings.tol:
            return lam_z, state, iteration, norm, True
        if np.max(lam_z) > DIVERGED or iteration == settings.max_iter:
            break
        step = newton_step(lam_z, gradient, dual_hessian(problem, state))
        new_lam, state, new_value = line_search(problem, lam_z, value, gradient, step)
        if np.array_equal(new_lam, lam_z):
            break  # no ascent left at machine precision
        lam_z, value = new_lam, new_value
    return lam_z, state, iteration, norm, False


def solve_palette(
    rewards: np.ndarray,
    palette: np.ndarray,
    values: tuple[str, ...],
    groups: np.ndarray | None = None,
    settings: SolverSettings | None = None,
    normalise: str = "pooled",
) -> PaletteSolution:
    """MAP's lambda for `palette` over the reward matrix `rewards` [n, k]."""
    started = time.perf_counter()
    settings = settings or SolverSettings()
    problem = DualProblem.build(rewards, palette, groups if normalise == "per-prompt" else None)
    reference = problem.to_raw_levels(tilt(problem, np.zeros(len(values))).levels)
    common = {"values": values, "palette": np.asarray(palette, dtype=np.float64),
              "reference_levels": reference, "samples": len(rewards), "normalise": normalise}
    verdict = infeasible_verdict(problem, values, per_value_only=True)
    if verdict is not None:
        return PaletteSolution(verdict=verdict, seconds=time.perf_counter() - started, **common)
    lam_z, state, iterations, norm, converged = maximise_dual(problem, settings)
    if not converged:
        verdict = stopped_short_verdict(problem, values, iterations, norm)
        return PaletteSolution(verdict=verdict, iterations=iterations, gradient_norm=norm,
                               seconds=time.perf_counter() - started, **common)
    return PaletteSolution(
        verdict=Verdict.attained(iterations, norm, settings.tol),
        lam=problem.to_raw_lambda(lam_z),
        levels=problem.to_raw_levels(state.levels),
        level_se=state.level_se(problem.z, problem.group_weight) * problem.scale,
        kl=state.kl(lam_z),
        ess=state.ess(),
        dual_value=dual_value(problem, lam_z, state),
        iterations=iterations,
        gradient_norm=norm,
        seconds=time.perf_counter() - started,
        **common,
    )

