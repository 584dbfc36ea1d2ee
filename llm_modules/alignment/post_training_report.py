"""Tables (Markdown) and the trajectory plot of a post-training benchmark result."""

from __future__ import annotations

import statistics
from pathlib import Path

from llm_modules.alignment.post_training_bench import JOINT, METHODS, TIME_LIMIT

COLUMNS = (
    ("final_sft", "f_SFT", 3), ("final_dpo", "f_DPO", 3), ("distance", "distance to ideal", 3),
    ("weighted_gap", "lambda-weighted gap", 3), ("seconds", "wall s", 1),
    ("seconds_ratio", "wall / sequential", 2), ("cpu_seconds_ratio", "CPU / sequential", 2),
    ("peak_mib", "peak MiB", 1),
    ("dpo_share", "DPO share of gradients", 2),
)


def _cell(spread: dict[str, float], digits: int) -> str:
    return f"{spread['median']:.{digits}f} ({spread['min']:.{digits}f}-{spread['max']:.{digits}f})"


def summary_tables(result: dict) -> str:
    """Markdown: per lambda and method every metric, then the verdict, then the front."""
    summary, settings = result["summary"], result["settings"]
    table, optimum = summary["table"], summary["optimum"]
    seeds = [s["seed"] for s in result["per_seed"]]
    lines = [
        f"Ideal point (held out, median (min-max) over seeds {seeds}): "
        f"f_SFT* {_cell(optimum['sft_held_out'], 3)}, f_DPO* {_cell(optimum['dpo_held_out'], 3)}.",
        "",
        "| lambda | method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for lam in settings["lambdas"]:
        for method in METHODS:
            row = table[f"{method}@{lam:g}"]
            cells = " | ".join(_cell(row[key], digits) for key, _, digits in COLUMNS)
            lines.append(f"| {lam:g} | {method} | {cells} |")
    lines += ["", f"| lambda | method | closer to the ideal point than both sequential orders "
              f"(median distance) | wall time <= {TIME_LIMIT}x sequential (median ratio) | "
              f"CPU time <= {TIME_LIMIT}x sequential |", "|---|---|---|---|---|"]
    for lam in settings["lambdas"]:
        for method in JOINT:
            verdict = summary["verdict"][f"{method}@{lam:g}"]
            marks = [verdict[k] for k in ("closer_than_both_sequential", "time_within_limit",
                                          "cpu_time_within_limit")]
            lines.append(f"| {lam:g} | {method} | "
                         + " | ".join("yes" if m else "NO" for m in marks) + " |")
    lines += ["", "Pareto front from Mix (final held-out values; lambda 0 and 1 are SFT alone "
              "and DPO alone):", "", "| lambda | f_SFT | f_DPO |", "|---|---|---|"]
    for lam, key in front_keys(result):
        lines.append(f"| {lam:g} | {_cell(table[key]['final_sft'], 3)} | "
                     f"{_cell(table[key]['final_dpo'], 3)} |")
    lines.append("")
    lines.append(f"Whole benchmark: {result['seconds']:.0f} s.")
    return "\n".join(lines)


def front_keys(result: dict) -> list[tuple[float, str]]:
    """(lambda, run key) of every Mix-like run: SFT alone, Mix at each lambda, DPO alone."""
    settings = result["settings"]
    lambdas = sorted({*settings["lambdas"], *settings["front_lambdas"]})
    return [(0.0, "sft@0"), *[(lam, f"mix@{lam:g}") for lam in lambdas], (1.0, "dpo@1")]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both coordinates (lower is better), by f_SFT."""
    return sorted(p for p in points
                  if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points))


def median_trajectory(result: dict, key: str) -> tuple[list[float], list[float]]:
    """Element-wise median over seeds of the held-out (f_SFT, f_DPO) trajectory."""
    runs = [s["runs"][key]["trajectory"] for s in result["per_seed"]]
    points = list(zip(*runs, strict=True))
    return ([statistics.median(p[1] for p in step) for step in points],
            [statistics.median(p[2] for p in step) for step in points])


def plot_trajectories(result: dict, path: str | Path) -> Path:
    """One panel per lambda: each method's median trajectory in the (f_SFT, f_DPO) plane,
    the Mix Pareto front and the ideal point. f_SFT is on a log axis (DPO alone drives it
    from below 1 to over 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lambdas = result["settings"]["lambdas"]
    table, optimum = result["summary"]["table"], result["summary"]["optimum"]
    front = pareto_front([(table[k]["final_sft"]["median"], table[k]["final_dpo"]["median"])
                          for _, k in front_keys(result)])
    figure, axes = plt.subplots(1, len(lambdas), figsize=(5.2 * len(lambdas), 4.6), squeeze=False)
    for axis, lam in zip(axes[0], lambdas, strict=True):
        axis.plot(*zip(*front, strict=True), "k--", lw=1, marker="s", ms=4,
                  label="Mix front (non-dominated, lambda 0..1)")
        for method in METHODS:
            xs, ys = median_trajectory(result, f"{method}@{lam:g}")
            line, = axis.plot(xs, ys, lw=1.4, alpha=0.85, label=method)
            axis.plot(xs[-1], ys[-1], "o", color=line.get_color(), ms=7)
        axis.plot(optimum["sft_held_out"]["median"], optimum["dpo_held_out"]["median"], "*",
                  color="gold", mec="k", ms=16, label="ideal point")
        axis.set_xscale("log")
        axis.set_title(f"lambda = {lam:g} (weight on DPO)")
        axis.set_xlabel("held-out f_SFT (token NLL)")
        axis.set_ylabel("held-out f_DPO")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    seeds = len(result["per_seed"])
    figure.suptitle(f"Trajectories (median over {seeds} seed{'s' * (seeds > 1)}; dot = end)")
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
