"""MAP's palette solver on synthetic reward matrices: agreement with an independent solver,
optimality, feasibility verdicts, sequential alignment, random baselines, adjustment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from llm_modules.alignment.map.baselines import (
    random_lambda_baseline,
    sequential_alignment,
    sequential_gap,
)
from llm_modules.alignment.map.dual import DualProblem, tilt
from llm_modules.alignment.map.feasibility import largest_step, separate
from llm_modules.alignment.map.palette import quantile_palette
from llm_modules.alignment.map.reference_solver import scipy_lambda
from llm_modules.alignment.map.solver import SolverSettings, solve_palette

VALUES = ("a", "b", "c")


def rewards(n: int = 4000, seed: int = 0, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Skewed, correlated rewards in different units; optional prompt groups."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 3)) @ np.array([[1.0, 0.4, -0.3], [0, 1.0, 0.5], [0, 0, 1.0]])
    matrix = np.c_[np.exp(0.5 * base[:, 0]), 3.0 * base[:, 1] - 1, 0.1 * base[:, 2] + 0.4]
    group = np.repeat(np.arange(groups), -(-n // groups))[:n]
    rng.shuffle(group)
    return matrix + 0.2 * rng.standard_normal(groups)[group][:, None], group


@pytest.mark.parametrize("normalise, groups", [("pooled", 1), ("per-prompt", 40)])
@pytest.mark.parametrize("quantiles", [(0.6, 0.6, 0.6), (0.8, 0.5, 0.7), (0.3, 0.9, 0.2)])
def test_lambda_agrees_with_scipy_to_1e3_relative(normalise, groups, quantiles):
    matrix, group = rewards(groups=groups)
    palette = quantile_palette(matrix, np.array(quantiles))
    solution = solve_palette(matrix, palette, VALUES, group, normalise=normalise)
    assert solution.feasible and solution.lam is not None
    expected = scipy_lambda(matrix, palette, group if normalise == "per-prompt" else None)
    scale = np.max(np.abs(expected))
    assert scale > 0.1  # a palette that actually needs alignment
    for mine, theirs in zip(solution.lam, expected, strict=True):
        if theirs > 1e-6 * scale:
            assert abs(mine - theirs) <= 1e-3 * abs(theirs)
        else:
            assert mine <= 1e-6 * scale
    assert 1 <= solution.iterations < 50 and solution.gradient_norm <= 1e-9


def test_optimum_meets_the_palette_with_complementary_slackness():
    matrix, _ = rewards()
    palette = quantile_palette(matrix, np.array([0.75, 0.2, 0.75]))
    solution = solve_palette(matrix, palette, VALUES)
    assert solution.lam is not None and solution.levels is not None
    sd = matrix.std(axis=0)
    active = solution.lam > 0
    assert active.any() and not active.all()  # b's low target is met by p0 already
    assert np.all(np.abs(solution.levels - palette)[active] <= 1e-8 * sd[active])
    assert np.all(solution.levels[~active] >= palette[~active])
    # Self-normalised importance weights, KL and ESS written out by hand.
    scores = matrix @ solution.lam
    w = np.exp(scores - logsumexp(scores))
    assert np.allclose(solution.levels, w @ matrix)
    assert solution.kl == pytest.approx(float(np.sum(w * np.log(len(w) * w))), rel=1e-9)
    assert solution.ess == pytest.approx(1 / np.sum(w**2), rel=1e-9)
    assert solution.kl == pytest.approx(solution.dual_value, rel=1e-6)  # strong duality


def test_tolerance_controls_convergence_not_a_step_count():
    matrix, _ = rewards()
    palette = quantile_palette(matrix, np.array([0.8, 0.8, 0.8]))
    loose = solve_palette(matrix, palette, VALUES, settings=SolverSettings(tol=1e-3))
    tight = solve_palette(matrix, palette, VALUES, settings=SolverSettings(tol=1e-12))
    assert loose.gradient_norm <= 1e-3 and tight.gradient_norm <= 1e-12
    assert loose.iterations <= tight.iterations


def test_reference_levels_and_zero_lambda_when_p0_already_meets_the_palette():
    matrix, _ = rewards()
    solution = solve_palette(matrix, matrix.mean(axis=0) - 1.0, VALUES)
    assert solution.feasible and np.all(solution.lam == 0)
    assert solution.kl == 0 and solution.ess == pytest.approx(len(matrix))
    assert np.allclose(solution.reference_levels, matrix.mean(axis=0))


def test_level_above_every_sample_is_infeasible_with_the_value_named():
    matrix, _ = rewards()
    palette = matrix.mean(axis=0)
    palette[1] = matrix[:, 1].max() + 0.5
    solution = solve_palette(matrix, palette, VALUES)
    assert not solution.feasible and solution.lam is None
    assert solution.verdict.status == "outside-hull"
    assert "'b'" in solution.verdict.reason and "convex hull" in solution.verdict.reason


def test_jointly_unreachable_palette_is_infeasible_with_a_separating_direction():
    matrix, _ = rewards()
    palette = quantile_palette(matrix, np.array([0.995, 0.995, 0.995]))
    assert np.all(palette < matrix.max(axis=0))  # each level alone is reachable
    solution = solve_palette(matrix, palette, VALUES)
    verdict = solution.verdict
    assert not solution.feasible and verdict.status == "outside-hull"
    assert "together" in verdict.reason and verdict.margin > 0
    # The certificate: along lambda = s d the dual grows at least like s * margin.
    problem = DualProblem.build(matrix, palette)
    d = np.asarray(verdict.direction)
    for s in (10.0, 100.0, 1000.0):
        state = tilt(problem, s * d)
        assert s * d @ problem.target - state.log_normaliser >= s * verdict.margin - 1e-6


def test_level_at_the_sample_maximum_is_on_the_boundary():
    matrix, _ = rewards()
    palette = matrix.min(axis=0)
    palette[0] = matrix[:, 0].max()
    solution = solve_palette(matrix, palette, VALUES)
    assert not solution.feasible and solution.verdict.status == "on-boundary"


def test_separation_margin_is_negative_inside_the_hull():
    matrix, _ = rewards()
    margin, direction = separate(DualProblem.build(matrix, matrix.mean(axis=0)))
    assert margin < 0 and direction.sum() == pytest.approx(1.0)


def test_sequential_alignment_converges_to_map_and_one_round_can_miss():
    rng = np.random.default_rng(3)
    # Two anti-correlated values: aligning the second undoes part of the first.
    first = rng.standard_normal(5000)
    matrix = np.c_[first, -0.7 * first + 0.7 * rng.standard_normal(5000)]
    palette = quantile_palette(matrix, np.array([0.7, 0.7]))
    solution = solve_palette(matrix, palette, ("x", "y"))
    rounds = sequential_alignment(DualProblem.build(matrix, palette), ("x", "y"), 30)
    gaps = sequential_gap(rounds, solution)
    assert gaps[0]["missed"] == ["x"] and gaps[0]["shortfall"][0] > 0.05
    assert gaps[-1]["missed"] == [] and gaps[-1]["lambda_gap_relative"] < 1e-4
    assert abs(gaps[-1]["kl_minus_map"]) < 1e-8


def test_random_lambdas_that_meet_the_palette_pay_more_kl_than_map():
    matrix, _ = rewards()
    palette = quantile_palette(matrix, np.array([0.7, 0.7, 0.7]))
    solution = solve_palette(matrix, palette, VALUES)
    baseline = random_lambda_baseline(DualProblem.build(matrix, palette), solution, 300, 0)
    assert 0 < baseline["share_meeting"] < 1
    assert baseline["min_kl_meeting"] >= solution.kl


def test_largest_step_is_the_feasibility_boundary():
    matrix, _ = rewards(n=2000)
    palette = quantile_palette(matrix, np.array([0.5, 0.5, 0.5]))
    high = quantile_palette(matrix, np.array([0.999, 0.999, 0.999]))
    problem = DualProblem.build(matrix, palette)
    rho = largest_step(problem, high - palette, 1.0)
    assert rho is not None and 0 < rho < 1
    inside = solve_palette(matrix, palette + (rho - 0.02) * (high - palette), VALUES)
    outside = solve_palette(matrix, palette + (rho + 0.02) * (high - palette), VALUES)
    assert inside.feasible and not outside.feasible
    # One value alone, the others at their minimum: its largest level is the sample max.
    floor = matrix.min(axis=0)
    step = largest_step(DualProblem.build(matrix, floor), np.eye(3)[0], 100.0)
    assert floor[0] + step == pytest.approx(matrix[:, 0].max())
    assert largest_step(DualProblem.build(matrix, high * 10), np.eye(3)[0], 1.0) is None


def test_a_solver_stopped_short_says_so_instead_of_calling_a_reachable_palette_infeasible():
    matrix, _ = rewards()
    palette = quantile_palette(matrix, np.array([0.8, 0.8, 0.8]))
    solution = solve_palette(matrix, palette, VALUES, settings=SolverSettings(max_iter=1))
    assert solution.verdict.status == "undecided" and "max-iter" in solution.verdict.reason
    assert solution.verdict.margin < 0


def test_per_prompt_level_interval_is_the_spread_of_the_prompts_tilted_means():
    matrix, group = rewards(groups=50)
    palette = quantile_palette(matrix, np.array([0.7, 0.7, 0.7]))
    solution = solve_palette(matrix, palette, VALUES, group, normalise="per-prompt")
    scores = matrix @ solution.lam
    per_prompt = []
    for key in np.unique(group):
        rows = group == key
        w = np.exp(scores[rows] - logsumexp(scores[rows]))
        per_prompt.append(w @ matrix[rows])
    per_prompt = np.array(per_prompt)
    assert np.allclose(solution.levels, per_prompt.mean(axis=0))
    assert np.allclose(solution.level_se, per_prompt.std(axis=0, ddof=1) / np.sqrt(50))
