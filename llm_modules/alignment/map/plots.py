"""Matplotlib figures for `align report` (written to files, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_levels(solution: dict[str, Any], realised: dict[str, Any] | None, path: Path) -> Path:
    """One panel per value: p0's level, the palette, MAP's level and the realised ones."""
    names = solution["values"]
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for i, (axis, name) in enumerate(zip(axes[0], names, strict=True)):
        bars = {"p0": solution["reference_levels"][i]}
        errors = {"p0": 0.0}
        if solution["levels"] is not None:
            bars["MAP (samples)"] = solution["levels"][i]
            errors["MAP (samples)"] = solution["levels_ci95"][i]
        if realised:
            for key, label in (("before", "before (fresh)"), ("after", "after (fresh)")):
                bars[label] = realised[key]["mean"][i]
                errors[label] = realised[key]["ci95"][i]
        colours = ["#7f7f7f", "#1f77b4", "#bdbdbd", "#2ca02c"]
        for x, (label, level) in enumerate(bars.items()):
            # Levels are in each value's own units (log-odds, cosine, ...): points, not bars.
            axis.errorbar([x], [level], yerr=[errors[label]], fmt="o", color=colours[x],
                          capsize=4, markersize=7)
        axis.axhline(solution["palette"][i], color="#d62728", linestyle="--", label="palette")
        axis.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right", fontsize=8)
        axis.set_xlim(-0.5, len(bars) - 0.5)
        axis.set_title(name)
        low = min(*(v - errors[k] for k, v in bars.items()), solution["palette"][i])
        high = max(*(v + errors[k] for k, v in bars.items()), solution["palette"][i])
        pad = 0.1 * (high - low or 1.0)
        axis.set_ylim(low - pad, high + pad)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"MAP palette: {'feasible' if solution['feasible'] else 'infeasible'}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_pareto(
    solution: dict[str, Any], realised: dict[str, Any] | None,
    frontier: dict[str, list[list[float]]], pair: tuple[str, str], path: Path,
) -> Path:
    """The two frontiers between a pair of values, with p0, the palette and the results."""
    a, b = (solution["values"].index(name) for name in pair)
    figure, axis = plt.subplots(figsize=(5, 4.2))
    for key, label, style in (("any_kl", "reachable (any KL)", "-"),
                              ("at_map_kl", "at MAP's KL", "--")):
        if frontier[key]:
            xs, ys = zip(*frontier[key], strict=True)
            axis.plot(xs, ys, style, label=label)
    points = [("p0", solution["reference_levels"], "o", "#7f7f7f"),
              ("MAP (samples)", solution["levels"], "s", "#1f77b4")]
    if realised:
        points.append(("realised (fresh)", realised["after"]["mean"], "^", "#2ca02c"))
    points.append(("palette", solution["palette"], "*", "#d62728"))  # drawn last, on top
    for label, levels, marker, colour in points:
        if levels is not None:
            axis.scatter([levels[a]], [levels[b]], marker=marker, color=colour, label=label,
                         zorder=3, s=60)
    axis.set_xlabel(pair[0])
    axis.set_ylabel(pair[1])
    axis.set_title(f"Pareto frontier: {pair[0]} vs {pair[1]}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
