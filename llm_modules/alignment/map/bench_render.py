"""The MAP benchmark's result as the markdown section of docs/benchmarks/map.md."""

from __future__ import annotations

import statistics
from typing import Any

from llm_modules.alignment.map.bench import FEASIBLE, INFEASIBLE

NORMS = ("per-prompt", "pooled")


def spread(values: list[float], digits: int = 3) -> str:
    """median (min-max)."""
    if not values:
        return "-"
    middle, low, high = statistics.median(values), min(values), max(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _solves(result: dict, palette: str, norm: str) -> list[dict]:
    return [seed["palettes"][palette]["solve"][norm] for seed in result["per_seed"]]


def solver_table(result: dict) -> list[str]:
    lines = ["| palette | normalisation | feasible (seeds) | KL (nats) | ESS | solve ms | "
             "max rel. diff. to scipy |", "|---|---|---|---|---|---|---|"]
    for palette in [*FEASIBLE, *INFEASIBLE]:
        for norm in NORMS:
            rows = _solves(result, palette, norm)
            ok = [r for r in rows if r["feasible"]]
            diffs = [r["scipy_max_relative_difference"] for r in ok]
            lines.append(
                f"| {palette} | {norm} | {len(ok)}/{len(rows)} | "
                f"{spread([r['kl'] for r in ok])} | {spread([r['ess'] for r in ok], 0)} | "
                f"{spread([r['seconds'] * 1000 for r in rows], 1)} | "
                f"{f'{max(diffs):.1e}' if diffs else '-'} |")
    return lines


def infeasible_reasons(result: dict) -> list[str]:
    lines = []
    for palette in INFEASIBLE:
        rows = _solves(result, palette, "per-prompt")
        statuses = sorted({r["verdict"]["status"] for r in rows})
        lines.append(f"- **{palette}** ({', '.join(statuses)} in every seed under per-prompt; "
                     f"pooled: {sum(not r['feasible'] for r in _solves(result, palette, 'pooled'))}"
                     f"/{len(rows)} infeasible). Seed {result['per_seed'][0]['seed']}: "
                     f"\"{rows[0]['verdict']['reason']}\"")
    return lines


def decode_table(result: dict, norm: str, key: str = "decode_after") -> list[str]:
    """Per palette and value: target, realised level on fresh generations, seeds reached."""
    values = result["settings"]["values"]
    lines = ["| palette | value | target | p0 (fresh) | realised (fresh) | 95 % half-width | "
             "reached |", "|---|---|---|---|---|---|---|"]
    for palette in FEASIBLE:
        seeds = [s["palettes"][palette].get(norm) for s in result["per_seed"]]
        seeds = [s for s in seeds if s is not None]
        for i, value in enumerate(values):
            lines.append(
                f"| {palette} | {value} | "
                f"{spread([s[key]['target'][i] for s in seeds])} | "
                f"{spread([s['decode_before']['mean'][i] for s in seeds])} | "
                f"{spread([s[key]['mean'][i] for s in seeds])} | "
                f"{spread([s[key]['ci95'][i] for s in seeds])} | "
                f"{sum(s[key]['reached'][i] for s in seeds)}/{len(seeds)} |")
    return lines


def all_reached(result: dict, norm: str, key: str = "decode_after") -> tuple[int, int]:
    """(palette-seed runs with every level reached, runs)."""
    runs = [s["palettes"][p].get(norm) for s in result["per_seed"] for p in FEASIBLE]
    runs = [r for r in runs if r is not None]
    return sum(r[key]["all_reached"] for r in runs), len(runs)


def sequential_table(result: dict, norm: str) -> list[str]:
    lines = ["| palette | round 1: values missed on the samples (per seed) | round 1: largest "
             "shortfall (sd) | round 1 decoded: runs with a level not reached | round 5: "
             "missed | round 1 KL - MAP KL |", "|---|---|---|---|---|---|"]
    for palette in FEASIBLE:
        missed, short, fresh, late, kl = [], [], 0, 0, []
        for seed in result["per_seed"]:
            row = seed["palettes"][palette].get(norm)
            if row is None:
                continue
            first, last = row["sequential"][0], row["sequential"][-1]
            missed.append(",".join(first["missed"]) or "none")
            short.append(max(s / sd for s, sd in zip(first["shortfall"], seed["reward_sd"],
                                                     strict=True)))
            fresh += not row["sequential_round1_decode"]["all_reached"]
            late += bool(last["missed"])
            kl.append(first["kl_minus_map"])
        lines.append(f"| {palette} | {'; '.join(missed)} | {spread(short)} | "
                     f"{fresh}/{len(missed)} | {late}/{len(missed)} | {spread(kl)} |")
    return lines


def random_table(result: dict, norm: str) -> list[str]:
    lines = ["| palette | random lambdas meeting the palette | MAP KL | least KL among those "
             "meeting | median KL among those meeting |", "|---|---|---|---|---|"]
    for palette in FEASIBLE:
        rows = [s["palettes"][palette][norm]["random_lambda"] for s in result["per_seed"]
                if norm in s["palettes"][palette]]
        lines.append(
            f"| {palette} | {spread([r['share_meeting'] for r in rows], 2)} | "
            f"{spread([r['map_kl'] for r in rows])} | "
            f"{spread([r['min_kl_meeting'] for r in rows if r['min_kl_meeting'] is not None])} | "
            f"{spread([r['median_kl_meeting'] for r in rows if r['median_kl_meeting']])} |")
    return lines


def finetune_table(result: dict) -> list[str]:
    values = result["settings"]["values"]
    lines = ["| method | value | target | realised (fresh) | reached |", "|---|---|---|---|---|"]
    seeds = [s for s in result["per_seed"] if "finetune" in s]
    if not seeds:
        return []
    for method in seeds[0]["finetune"]:
        for i, value in enumerate(values):
            after = [s["finetune"][method]["after"] for s in seeds]
            lines.append(f"| {method} | {value} | {spread([a['target'][i] for a in after])} | "
                         f"{spread([a['mean'][i] for a in after])} | "
                         f"{sum(a['reached'][i] for a in after)}/{len(after)} |")
    return lines


def _adjustment(result: dict) -> list[str]:
    lines = ["| normalisation | largest positiveness from q50 (palette level) | rho toward q99 |",
             "|---|---|---|"]
    for norm in NORMS:
        rows = [s["adjustment"][norm] for s in result["per_seed"]]
        lines.append(f"| {norm} | {spread([r['largest_positiveness'] for r in rows])} | "
                     f"{spread([r['rho_toward_q99'] for r in rows])} |")
    return lines


def _timing(result: dict) -> list[str]:
    timing = result["timing"]
    lines = ["| normalisation | solve seconds | Newton iterations | feasible |",
             "|---|---|---|---|"]
    for norm in NORMS:
        row = timing[norm]
        lines.append(f"| {norm} | {spread(row['seconds'])} | {row['iterations']} | "
                     f"{row['feasible']} |")
    return lines


def render(result: dict[str, Any]) -> str:
    """The whole section: setup, then one table per claim."""
    bench = result["settings"]
    seeds = len(result["per_seed"])
    reached, runs = all_reached(result, "per-prompt")
    pooled_reached, pooled_runs = all_reached(result, "pooled")
    seq_reached, seq_runs = all_reached(result, "per-prompt", "sequential_round1_decode")
    timing = result["timing"]
    parts = [
        "## MAP: multi-human-value alignment palette (issue 14)",
        "",
        PROSE_SETUP.format(prompts=bench["prompts"], n=bench["per_prompt"],
                           fresh=bench["fresh_prompts"], seeds=seeds,
                           values=", ".join(bench["values"]),
                           seconds=result["seconds"], minutes=result["seconds"] / 60),
        "",
        "### Solver and feasibility",
        "",
        *solver_table(result),
        "",
        "Why the infeasible palettes are infeasible, as the solver says it:",
        "",
        *infeasible_reasons(result),
        "",
        "### Decoding realisation on fresh generations",
        "",
        f"Per-prompt normalisation: **{reached}/{runs}** palette-seed runs reach every level "
        f"(c_i <= mean + 1.96 se on the fresh generations); with the pooled dual's lambdas "
        f"decoded the same way, {pooled_reached}/{pooled_runs}.",
        "",
        *decode_table(result, "per-prompt"),
        "",
        "Pooled normalisation (the dual exactly as the MAP paper writes it), same decoder:",
        "",
        *decode_table(result, "pooled"),
        "",
        "### Sequential alignment against MAP",
        "",
        f"Decoded with the one-round sequential lambdas, {seq_runs - seq_reached}/{seq_runs} "
        "palette-seed runs miss a level on fresh generations (per-prompt normalisation).",
        "",
        *sequential_table(result, "per-prompt"),
        "",
        "Pooled normalisation:",
        "",
        *sequential_table(result, "pooled"),
        "",
        "### Random lambdas",
        "",
        *random_table(result, "per-prompt"),
        "",
        "### Automatic palette adjustment",
        "",
        *_adjustment(result),
        "",
        "### Fine-tuning realisation",
        "",
        *finetune_table(result),
        "",
        f"### Solve time over {timing['samples']} samples x {len(timing['values'])} values",
        "",
        *_timing(result),
        "",
    ]
    return "\n".join(parts)


PROSE_SETUP = """Setup: ..."""
