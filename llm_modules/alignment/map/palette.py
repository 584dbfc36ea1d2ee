"""Palettes: parsing a user's targets, and everything `align solve` reports about one.

A palette names a level for each value to align: `positiveness=2.5,harmlessness=q0.7` sets
positiveness to 2.5 and harmlessness to the 70 % quantile of its rewards under p0 (on the
samples). Values of the samples left out of the palette are not constrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from llm_modules.alignment.map.baselines import (
    random_lambda_baseline,
    sequential_alignment,
    sequential_gap,
)
from llm_modules.alignment.map.dual import NORMALISATIONS, DualProblem
from llm_modules.alignment.map.feasibility import largest_step
from llm_modules.alignment.map.samples import SampleSet
from llm_modules.alignment.map.solver import (
    PaletteSolution,
    SolverSettings,
    solve_palette,
)


@dataclass(frozen=True)
class Palette:
    values: tuple[str, ...]
    levels: np.ndarray


def parse_palette(spec: str, samples: SampleSet, option: str = "--palette") -> Palette:
    """`name=LEVEL` or `name=qQ` (quantile Q in [0, 1] of p0's rewards), comma-separated."""
    names, levels = [], []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, level = part.partition("=")
        name, level = name.strip(), level.strip()
        if not sep or not name or not level:
            raise Pv4fadError(f"{option} {spec!r}: expected name=LEVEL or name=qQUANTILE, "
                              f"found {part!r}")
        if name in names:
            raise Pv4fadError(f"{option} {spec!r}: {name!r} is given twice")
        column = samples.columns([name], where=option)[:, 0]
        try:
            if level.startswith("q"):
                quantile = float(level[1:])
                if not 0 <= quantile <= 1:
                    raise ValueError
                value = float(np.quantile(column, quantile))
            else:
                value = float(level)
        except ValueError:
            raise Pv4fadError(f"{option} {spec!r}: level {level!r} of {name!r} is neither a "
                              "number nor qQ with 0 <= Q <= 1") from None
        if not np.isfinite(value):
            raise Pv4fadError(f"{option} {spec!r}: level of {name!r} is not finite")
        names.append(name)
        levels.append(value)
    if not names:
        raise Pv4fadError(f"{option} is empty: name at least one value and its level")
    return Palette(tuple(names), np.asarray(levels))


def quantile_palette(rewards: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Each value's level at its own quantile of p0's rewards."""
    return np.array([np.quantile(rewards[:, i], q) for i, q in enumerate(quantiles)])


def check_normalise(normalise: str) -> None:
    if normalise not in NORMALISATIONS:
        raise Pv4fadError(f"--normalise {normalise!r}: expected {' or '.join(NORMALISATIONS)}")


def solve(
    samples: SampleSet, palette: Palette, normalise: str = "pooled",
    settings: SolverSettings | None = None,
) -> PaletteSolution:
    check_normalise(normalise)
    return solve_palette(samples.columns(palette.values), palette.levels, palette.values,
                         samples.prompt_index, settings, normalise)


def _problem(samples: SampleSet, palette: Palette, normalise: str) -> DualProblem:
    groups = samples.prompt_index if normalise == "per-prompt" else None
    return DualProblem.build(samples.columns(palette.values), palette.levels, groups)


def adjust_along(
    samples: SampleSet, palette: Palette, direction: np.ndarray, upper: float,
    normalise: str, settings: SolverSettings | None = None, keep: float = 0.95,
) -> dict[str, Any]:
    """Automatic palette adjustment: the largest step t <= `upper` along `direction` that
    stays reachable (the hull boundary, where lambda is infinite), and the palette `keep`
    of the way there, solved (a finite lambda a decoder can use)."""
    step = largest_step(_problem(samples, palette, normalise), direction, upper)
    if step is None:
        return {"reachable": False, "reason": "the starting palette is itself unreachable"}
    pulled = Palette(palette.values, palette.levels + keep * step * direction)
    solution = solve(samples, pulled, normalise, settings)
    return {"reachable": True, "largest_step": step,
            "boundary_palette": (palette.levels + step * direction).tolist(),
            "keep": keep, "adjusted_palette": pulled.levels.tolist(),
            "adjusted_solution": solution.to_json()}


def raise_value(
    samples: SampleSet, palette: Palette, value: str, normalise: str,
    settings: SolverSettings | None = None,
) -> dict[str, Any]:
    """The largest level of `value` (one of the palette's) reachable with the other levels
    kept."""
    index = palette.values.index(value)
    column = samples.columns([value])[:, 0]
    upper = float(column.max() - palette.levels[index])
    result = adjust_along(samples, palette, np.eye(len(palette.values))[index], max(upper, 0.0),
                          normalise, settings)
    if result["reachable"]:
        result["largest_level"] = float(palette.levels[index] + result["largest_step"])
    return {"value": value, **result}


def toward(
    samples: SampleSet, palette: Palette, other: Palette, normalise: str,
    settings: SolverSettings | None = None,
) -> dict[str, Any]:
    """How far along the segment from `palette` to `other` (the same values in the same
    order) stays reachable (rho in [0, 1])."""
    result = adjust_along(samples, palette, other.levels - palette.levels, 1.0, normalise,
                          settings)
    return {"toward": other.levels.tolist(), **result}


def analyse(
    samples: SampleSet, palette: Palette, solution: PaletteSolution, normalise: str,
    rounds: int = 0, random_lambdas: int = 0, seed: int = 0,
) -> dict[str, Any]:
    """Sequential alignment (against MAP) and random-lambda baselines for a solved palette."""
    out: dict[str, Any] = {}
    if not solution.feasible:
        return out
    problem = _problem(samples, palette, normalise)
    if rounds:
        rounds_run = sequential_alignment(problem, palette.values, rounds)
        out["sequential"] = sequential_gap(rounds_run, solution)
    if random_lambdas:
        out["random_lambda"] = random_lambda_baseline(problem, solution, random_lambdas, seed)
    return out

