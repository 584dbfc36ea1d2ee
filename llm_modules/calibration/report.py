"""The benchmark's result as Markdown (the docs/benchmarks section) and its figures."""

from __future__ import annotations

from pathlib import Path

from llm_modules.calibration.plots import entropy_plot, reliability_diagram

HEADLINE_METRICS = ("accuracy", "macro_f1", "ece", "mean_entropy_bits")


def _seq(values: list | tuple) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _cell(s: dict) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def method_table(summary: dict, shots: str) -> list[str]:
    lines = ["| method | accuracy | macro-F1 | ECE | mean entropy (bits) | "
             "accuracy range over templates |", "|---|---|---|---|---|---|"]
    for method, entry in summary[shots].items():
        cells = [_cell(entry[m]) for m in HEADLINE_METRICS]
        lines.append(f"| {method} | {' | '.join(cells)} | {_cell(entry['template_range'])} |")
    return lines


def template_table(summary: dict, shots: str) -> list[str]:
    templates = list(next(iter(summary[shots].values()))["per_template_accuracy"])
    lines = [f"| method | {' | '.join(templates)} |", "|---|" + "---|" * len(templates)]
    for method, entry in summary[shots].items():
        values = entry["per_template_accuracy"]
        lines.append(f"| {method} | {' | '.join(f'{values[t]:.3f}' for t in templates)} |")
    return lines


def checks(result: dict) -> list[str]:
    """The issue's targets, each computed from the summary: LinC at each of the two
    smallest validation sizes against no calibration and contextual calibration."""
    summary = result["summary"]
    sizes = sorted(result["settings"]["sizes"])[:2]
    lines = ["| shots | LinC | accuracy vs none / contextual | ECE vs none / contextual | "
             "template range vs none / contextual |", "|---|---|---|---|---|"]
    for shots, by_method in summary.items():
        for n in sizes:
            linc = by_method[f"linc@{n}"]
            cells = []
            for metric in ("accuracy", "ece", "template_range"):
                mine = linc[metric]["median"]
                others = [by_method[m][metric]["median"] for m in ("none", "contextual")]
                # Higher accuracy is better; lower ECE and lower spread are better.
                marks = ["yes" if (mine > o if metric == "accuracy" else mine < o) else "no"
                         for o in others]
                cells.append(f"{mine:.3f} vs {others[0]:.3f} / {others[1]:.3f} "
                             f"({marks[0]} / {marks[1]})")
            lines.append(f"| {shots} | @{n} | {' | '.join(cells)} |")
    return lines


def sensitivity_table(sensitivity: dict) -> list[str]:
    kinds = list(sensitivity)
    header = " | ".join(f"{k}: std | {k}: range | {k}: mean" for k in kinds)
    lines = [f"| method | {header} |", "|---|" + "---|" * (3 * len(kinds))]
    for method in sensitivity[kinds[0]]:
        cells = " | ".join(f"{sensitivity[k][method][s]:.3f}" for k in kinds
                           for s in ("std", "range", "mean"))
        lines.append(f"| {method} | {cells} |")
    return lines


def federated_table(federated: dict) -> list[str]:
    lines = ["| validation size | shots | pooled LinC acc | FedAvg LinC acc | owner alone acc "
             "| pooled ECE | FedAvg ECE |", "|---|---|---|---|---|---|---|"]
    for key, entry in federated.items():
        if key == "max_abs_W_difference":
            continue
        size, shots = key.split("/")
        cells = [_cell(entry[k]) for k in ("pooled_accuracy", "federated_accuracy",
                                            "owner_alone_accuracy", "pooled_ece",
                                            "federated_ece")]
        lines.append(f"| {size} | {shots} | {' | '.join(cells)} |")
    lines += ["", "Largest |W_FedAvg − W_pooled| entry over all jobs: "
                  f"{federated['max_abs_W_difference']:.4f}."]
    return lines


def tuning_table(grid: dict[str, float], chosen: dict[str, float]) -> list[str]:
    """Mean development accuracy of LinC per (validation size, shots) and learning rate,
    the chosen rate in bold."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in grid.items():
        size, shots, lr = key.split("/")
        cells.setdefault((size, shots), {})[lr] = value
    rates = list(next(iter(cells.values())))
    lines = [f"| examples | shots | {' | '.join(f'lr {r}' for r in rates)} |",
             "|---|---|" + "---|" * len(rates)]
    for (size, shots), by_rate in cells.items():
        pick = chosen[f"{size}/{shots}"]
        row = [f"**{v:.3f}**" if float(lr) == pick else f"{v:.3f}" for lr, v in by_rate.items()]
        lines.append(f"| {size} | {shots} | {' | '.join(row)} |")
    return lines


def write_figures(result: dict, out_dir: str | Path) -> list[Path]:
    """A reliability diagram and an entropy histogram per number of shots."""
    paths = []
    for shots, by_method in result["diagrams"].items():
        curves = {f"{m} (ECE {d['ece']:.3f})": d["reliability"] for m, d in by_method.items()}
        paths.append(reliability_diagram(
            curves, Path(out_dir) / f"calibration_reliability_{shots}shot.png",
            f"{shots}-shot, pooled over seeds and templates"))
        paths.append(entropy_plot(
            {m: d["entropy"] for m, d in by_method.items()},
            Path(out_dir) / f"calibration_entropy_{shots}shot.png",
            f"{shots}-shot, pooled over seeds and templates"))
    return paths


def section(result: dict, figures: str | None = None) -> str:
    """The benchmark section for docs/benchmarks: settings, tables, checks, timings."""
    settings, seconds, machine = result["settings"], result["seconds"], result["machine"]
    tuning = result["tuning"]
    rates = ", ".join(f"({key.replace('/', ', ')}) {lr:g}" for key, lr in tuning["lr"].items())
    how = "given" if tuning.get("fixed") else (
        f"chosen per validation size and shots from {_seq(settings['lr_grid'])} on "
        f"development seeds {_seq(settings['dev_seeds'])}, which have data of their own")
    lines = [
        "## LinC: calibrated in-context learning (issue 16)", "",
        f"Task: {result['task']}; templates: "
        f"{', '.join(next(iter(result['rows'].values())))}; seeds {_seq(settings['seeds'])}; "
        f"shots {_seq(settings['shots'])}; validation sizes {_seq(settings['sizes'])}; "
        f"{settings['test_size']} test examples per seed (built-in task). LinC runs "
        f"{settings['linc_epochs']} epochs; its learning rate is {how}; per (examples, shots): "
        f"{rates}. Numbers are the median (min–max) over seeds of the mean over templates.",
        "",
        f"Machine: {machine['cpus']} CPU cores shared with other jobs (load average "
        f"{machine['load_average_before']:.1f} at the start, "
        f"{machine['load_average_after']:.1f} at the end), torch intra-op threads: "
        f"{machine['torch_threads']}, device {machine['device']}. Wall time "
        f"{seconds['total']:.0f} s, of which: "
        + ", ".join(f"{part} {value:.0f} s" for part, value in seconds.items()
                    if part != "total") + ".",
        "", "### Targets", "",
        "LinC with the two smallest validation sizes against no calibration and contextual "
        "calibration, medians over seeds; yes = LinC is better (higher accuracy, lower ECE, "
        "smaller accuracy range over templates).", "", *checks(result),
    ]
    for shots in result["summary"]:
        lines += ["", f"### {shots} shots", "", *method_table(result["summary"], shots), "",
                  "Accuracy per template (median over seeds):", "",
                  *template_table(result["summary"], shots)]
    if "grid_accuracy" in tuning:
        lines += ["", "### LinC's learning rate on the development seeds", "",
                  "Mean accuracy over the development seeds and templates (the chosen rate "
                  "in bold):", "", *tuning_table(tuning["grid_accuracy"], tuning["lr"])]
    lines += ["", f"### Sensitivity at {settings['sensitivity_shots']} shots", "",
              "Spread of accuracy over orders of the same demonstrations (permutations) "
              "and over label proportions of the demonstrations (proportions), median over "
              "seeds and templates:", "", *sensitivity_table(result["sensitivity"])]
    lines += ["", "### Reliability (pooled over seeds and templates)", ""]
    for shots, by_method in result["diagrams"].items():
        lines.append(f"- {shots} shots, ECE of the pooled predictions: " + ", ".join(
            f"{m} {d['ece']:.3f}" for m, d in by_method.items()))
    if figures:
        for shots in result["diagrams"]:
            lines.append(f"- figures: `{figures}/calibration_reliability_{shots}shot.png`, "
                         f"`{figures}/calibration_entropy_{shots}shot.png`")
    if "federated" in result:
        lines += ["", "### Federated LinC (FedAvg through Flower) against pooled fitting", "",
                  f"{settings['federated_owners']} owners hold equal shares of the "
                  f"validation examples; one round = {settings['federated_owners']} local "
                  f"epochs; {settings['linc_epochs']} rounds (LinC's epochs).", "",
                  *federated_table(result["federated"])]
    return "\n".join(lines) + "\n"
