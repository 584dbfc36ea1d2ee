"""`align report`: a table and plots of a solved (and possibly realised) palette.

The table lists per value: p0's level, the palette, MAP's level on the samples (with its
95 % interval), lambda, and the realised levels on fresh generations before and after
alignment. The plots show the same per value, and the Pareto frontier between two values:
the largest reachable level of the second for each level of the first (the other values
kept at their palette levels), both on the samples at any KL and among the aligned
distributions whose KL equals MAP's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llm_modules.alignment.map.dual import DualProblem, tilt
from llm_modules.alignment.map.feasibility import largest_step

PLOT_FORMATS = ("png", "svg")


def _cell(values: list[float] | None, index: int, ci: list[float] | None = None) -> str:
    if values is None:
        return "-"
    text = f"{values[index]:.4g}"
    return f"{text} ± {ci[index]:.2g}" if ci is not None else text


def table(solution: dict[str, Any], realised: dict[str, Any] | None) -> str:
    """Markdown table: one row per value of the palette."""
    head = "| value | p0 level | palette | MAP level (samples) | lambda |"
    rule = "|---|---|---|---|---|"
    if realised:
        head += " before (fresh) | after (fresh) | reached |"
        rule += "---|---|---|"
    rows = [head, rule]
    for i, name in enumerate(solution["values"]):
        row = (f"| {name} | {_cell(solution['reference_levels'], i)} | "
               f"{_cell(solution['palette'], i)} | "
               f"{_cell(solution['levels'], i, solution['levels_ci95'])} | "
               f"{_cell(solution['lambda'], i)} |")
        if realised:
            before, after = realised["before"], realised["after"]
            row += (f" {_cell(before['mean'], i, before['ci95'])} | "
                    f"{_cell(after['mean'], i, after['ci95'])} | "
                    f"{'yes' if after['reached'][i] else 'no'} |")
        rows.append(row)
    verdict = solution["verdict"]
    rows.append("")
    rows.append(f"Feasible: {'yes' if solution['feasible'] else 'no'} ({verdict['reason']}).")
    if solution["feasible"]:
        rows.append(f"KL(p_lambda || p0) = {solution['kl']:.4f} nats; effective sample size "
                    f"{solution['ess']:.0f} of {solution['samples']}; normalisation "
                    f"{solution['normalise']}.")
    return "\n".join(rows) + "\n"


def pareto_frontier(
    rewards: np.ndarray, palette: np.ndarray, pair: tuple[int, int], lam: np.ndarray | None,
    kl: float | None, groups: np.ndarray | None, points: int = 25,
) -> dict[str, list[list[float]]]:
    """(a, b) frontiers: reachable at any KL (linear programs) and at MAP's KL (lambda
    varied in the plane of the two values from MAP's, KL held by bisection)."""
    a, b = pair
    problem = DualProblem.build(rewards, palette, groups)
    bound = problem.to_raw_levels(problem.reachable_bound())
    reference = problem.to_raw_levels(tilt(problem, np.zeros(len(palette))).levels)
    hull = []
    for level in np.linspace(reference[a], bound[a], points):
        base = palette.copy()
        base[a], base[b] = level, rewards[:, b].min()
        step = largest_step(DualProblem.build(rewards, base, groups), np.eye(len(palette))[b],
                            float(bound[b] - base[b]))
        if step is not None:
            hull.append([float(level), float(base[b] + step)])
    at_kl: list[list[float]] = []
    if lam is not None and kl is not None and kl > 0:
        start = problem.to_z_lambda(lam)
        for angle in np.linspace(0, np.pi / 2, points):
            at_kl.append(_iso_kl_point(problem, start, pair, angle, kl))
    return {"any_kl": hull, "at_map_kl": at_kl}


def _iso_kl_point(problem: DualProblem, start: np.ndarray, pair: tuple[int, int],
                  angle: float, kl: float) -> list[float]:
    """Levels of the pair where lambda_z (start, with the pair's coordinates replaced by
    t (cos angle, sin angle)) reaches KL = `kl`, t by bisection."""
    def at(t: float) -> tuple[float, np.ndarray]:
        lam_z = start.copy()
        lam_z[pair[0]], lam_z[pair[1]] = t * np.cos(angle), t * np.sin(angle)
        state = tilt(problem, lam_z)
        return state.kl(lam_z), problem.to_raw_levels(state.levels)

    low, high = 0.0, 1.0
    while at(high)[0] < kl and high < 1e4:
        low, high = high, 2 * high
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if at(middle)[0] < kl else (low, middle)
    levels = at(high)[1]
    return [float(levels[pair[0]]), float(levels[pair[1]])]


def write_report(
    out: str | Path, solution: dict[str, Any], realised: dict[str, Any] | None,
    frontier: dict[str, list[list[float]]] | None, pair: tuple[str, str] | None,
) -> dict[str, str]:
    """table.md, levels.{png,svg} and pareto.{png,svg} under `out`; returns their paths."""
    from llm_modules.alignment.map.plots import plot_levels, plot_pareto

    where = Path(out)
    where.mkdir(parents=True, exist_ok=True)
    files = {"table": str(where / "table.md")}
    (where / "table.md").write_text(table(solution, realised))
    for fmt in PLOT_FORMATS:
        files[f"levels_{fmt}"] = str(plot_levels(solution, realised, where / f"levels.{fmt}"))
        if frontier is not None and pair is not None:
            files[f"pareto_{fmt}"] = str(plot_pareto(solution, realised, frontier, pair,
                                                     where / f"pareto.{fmt}"))
    return files
