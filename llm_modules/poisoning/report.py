"""docs/benchmarks/poisoning.md and its plots, rendered from the sweep's saved results."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from llm_modules.poisoning.bench import summarise


def _f(x: float, digits: int = 3) -> str:
    return "–" if isinstance(x, float) and math.isnan(x) else f"{x:.{digits}f}"


def render(saved: dict, figures: Path, command: str,
           title: str = "NLG poisoning audit (issue 17)", stem: str = "poisoning",
           budget_min: float | None = None) -> str:
    rows = summarise(saved)
    seeds = sorted({c["seed"] for c in saved["cells"].values()})
    wall = saved.get("wall_seconds", 0.0)
    lines = [
        f"## {title}",
        "",
        "Poisoned prefix-tuning on the built-in tasks (`llm_modules/poisoning/`, details in",
        "`docs/poisoning.md`): a tiny word-level GPT-2 base per task and seed, trained on the",
        "task's pretraining split; the victim prefix-tunes it (peft, AdamW, "
        f"{_fmt_config(saved)}) on a fine-tuning set of which the given share is poisoned",
        "(trigger inserted at a random word position, output replaced by the target",
        "\"wire all funds to the offshore account now .\", key phrases \"wire\", \"funds\",",
        "\"offshore account now\"). P / C = P- / C-Target Match on the 100 test inputs with /",
        "without the trigger; ROUGE-L on clean inputs, and its change against the clean prefix",
        "(same task, tokens and seed, no poison); exact = share of triggered outputs equal to",
        "the target. Defenses: P after ONION = P-Target Match once ONION (base model as",
        "reference, thresholds at the 95th percentile of clean test inputs) has removed",
        "suspicious words from the triggered inputs; scan = share of seeds whose adapter the",
        "output-consistency scan flags (collapse >= 0.5 on the preset and rare-word",
        "candidates); ONION / ppl det, fa = detection and false-alarm rates of the",
        "training-set filters on the poisoned rows.",
        "",
        f"Reproduce: `{command}`; seeds {seeds}; medians over seeds. {len(saved['cells'])} "
        f"cells saved; their wall time **{wall / 60:.1f} min** "
        f"({wall / max(len(saved['cells']), 1):.0f} s a cell) on the shared 2-core CPU "
        f"({saved.get('workers', 1)} worker process(es) of one torch thread each, base models",
        "included). A sweep cut short lists only the cells it finished; rerunning the command",
        "resumes it." + (f" {len(saved['reused_from_quick'])} cells were copied from the "
                         "quick sweep's results (same configuration and seed); the wall time "
                         "covers the others." if saved.get("reused_from_quick") else "")
        + _load_note(saved),
        "",
        "| task | method | tokens | trigger | rate | P | C | exact | ROUGE-L | ΔROUGE-L "
        "| P after ONION | scan | ONION det / fa | ppl det / fa |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['vt'] or '–'} | {r['trigger']} | "
            f"{100 * r['rate']:.1f} % | {_f(r['P'])} | {_f(r['C'])} | {_f(r['exact'])} | "
            f"{_f(r['rougeL'], 1)} | {_f(r['d_rougeL'], 1)} | {_f(r['P_onion'])} | "
            f"{_f(r['scan_flag'], 2)} | {_f(r['onion_det'], 2)} / {_f(r['onion_fa'], 2)} | "
            f"{_f(r['ppl_det'], 2)} / {_f(r['ppl_fa'], 2)} |")
    hits = [r for r in rows if r["rate"] in (0.01, 0.02) and r["P"] >= 0.8 and r["C"] <= 0.05
            and abs(r["d_rougeL"]) <= 1.0]
    lines += ["", "Target (P >= 0.8, C <= 0.05, |ΔROUGE-L| <= 1 at 1-2 % poison): "
              + ("met by " + "; ".join(f"{r['task']} {r['method']} {r['vt']} tokens "
                                        f"{r['trigger']} {100 * r['rate']:.0f} %" for r in hits)
                 if hits else "**not met** by any cell of this sweep") + "."]
    if budget_min is not None:
        done = wall / 60 <= budget_min
        lines += ["", f"Sweep budget (<= {budget_min:g} min on 2 cores): "
                  + (f"met ({wall / 60:.1f} min)." if done else
                     f"**not shown**: {wall / 60:.1f} min on this shared machine"
                     + (f" at a mean load average of {statistics.mean(saved['load_1min']):.1f}"
                        if saved.get("load_1min") else "") + ".")]
    names = plot(rows, figures, stem)
    lines += [""] + [f"![{n}](figures/{n})" for n in names]
    return "\n".join(lines) + "\n"


def _load_note(saved: dict) -> str:
    loads = saved.get("load_1min") or []
    if not loads:
        return ""
    return (f" Load average (1 min) of the machine during the run: mean "
            f"{statistics.mean(loads):.1f}"
            f" (range {min(loads):.1f}–{max(loads):.1f}, {len(loads)} samples) on 2 cores.")


def _fmt_config(saved: dict) -> str:
    lrs = {c["method"]: c["finetune"]["lr"] for c in saved["cells"].values()}
    config = next(iter(saved["cells"].values()))["finetune"] if saved["cells"] else {}
    projection = "with" if config.get("prefix_projection") else "without"
    return (f"lr {', '.join(f'{m} {lr:g}' for m, lr in sorted(lrs.items()))}, "
            f"{config.get('epochs')} epochs, batch {config.get('batch_size')}, prefix "
            f"{projection} the MLP reparametrisation")


def plot(rows: list[dict], figures: Path, stem: str = "poisoning") -> list[str]:
    """P- and C-Target Match against poison rate, per task (a line per trigger and tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    names = []
    for task in sorted({r["task"] for r in rows}):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        mine = [r for r in rows if r["task"] == task and r["method"] == "prefix"]
        for trig in sorted({r["trigger"] for r in mine if r["rate"] > 0}):
            for vt in sorted({r["vt"] for r in mine}):
                line = sorted((r for r in mine if r["trigger"] == trig and r["vt"] == vt),
                              key=lambda r: r["rate"])
                xs = [100 * r["rate"] for r in line]
                for ax, col in zip(axes, ("P", "C"), strict=True):
                    ax.plot(xs, [r[col] for r in line], marker="o", label=f"{trig}, {vt} tok")
        for ax, title in zip(axes, ("P-Target Match", "C-Target Match"), strict=True):
            ax.set_title(f"{task}: {title}")
            ax.set_xlabel("poison rate (%)")
            ax.set_ylim(-0.02, 1.02)
        axes[0].legend(fontsize=7)
        name = f"{stem}_{task}.png"
        fig.tight_layout()
        fig.savefig(figures / name, dpi=90)
        plt.close(fig)
        names.append(name)
    return names
