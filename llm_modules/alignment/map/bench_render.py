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


def _combined_reached(seed: dict, palette: str, norm: str, key: str) -> list[bool]:
    """c_i <= fresh mean + the 95 % half-width of (fresh mean - solver's level estimate):
    the fresh measurement and the reference samples lambda was fitted on both vary."""
    after = seed["palettes"][palette][norm][key]
    solver = seed["palettes"][palette]["solve"][norm]["levels_ci95"]
    return [t <= m + (f**2 + s**2) ** 0.5 for t, m, f, s in
            zip(after["target"], after["mean"], after["ci95"], solver, strict=True)]


def decode_table(result: dict, norm: str, key: str = "decode_after") -> list[str]:
    """Per palette and value: target, realised level on fresh generations, seeds reached
    (fresh interval alone; fresh and solver intervals combined)."""
    values = result["settings"]["values"]
    lines = ["| palette | value | target | p0 (fresh) | realised (fresh) | 95 % half-width | "
             "reached | reached, both intervals |", "|---|---|---|---|---|---|---|---|"]
    for palette in FEASIBLE:
        seeds = [s for s in result["per_seed"] if norm in s["palettes"][palette]]
        rows = [s["palettes"][palette][norm] for s in seeds]
        both = [_combined_reached(s, palette, norm, key) for s in seeds]
        for i, value in enumerate(values):
            lines.append(
                f"| {palette} | {value} | "
                f"{spread([r[key]['target'][i] for r in rows])} | "
                f"{spread([r['decode_before']['mean'][i] for r in rows])} | "
                f"{spread([r[key]['mean'][i] for r in rows])} | "
                f"{spread([r[key]['ci95'][i] for r in rows])} | "
                f"{sum(r[key]['reached'][i] for r in rows)}/{len(rows)} | "
                f"{sum(b[i] for b in both)}/{len(rows)} |")
    return lines


def reached_counts(result: dict, norm: str, key: str = "decode_after") -> dict[str, int]:
    """Runs (palette x seed) and value checks reached, by each criterion."""
    counts = dict.fromkeys(("runs", "runs_reached", "runs_reached_both", "checks",
                            "checks_reached", "checks_reached_both"), 0)
    for seed in result["per_seed"]:
        for palette in FEASIBLE:
            if norm not in seed["palettes"][palette]:
                continue
            strict = seed["palettes"][palette][norm][key]["reached"]
            both = _combined_reached(seed, palette, norm, key)
            counts["runs"] += 1
            counts["runs_reached"] += all(strict)
            counts["runs_reached_both"] += all(both)
            counts["checks"] += len(strict)
            counts["checks_reached"] += sum(strict)
            counts["checks_reached_both"] += sum(both)
    return counts


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


def _headline(result: dict) -> list[str]:
    strict, pooled = reached_counts(result, "per-prompt"), reached_counts(result, "pooled")
    seq = reached_counts(result, "per-prompt", "sequential_round1_decode")
    timing = result["timing"]
    slowest = max(max(timing[norm]["seconds"]) for norm in NORMS)
    infeasible = sum(not r["feasible"] for p in INFEASIBLE for n in NORMS
                     for r in _solves(result, p, n))
    diffs = [r["scipy_max_relative_difference"] for p in FEASIBLE for n in NORMS
             for r in _solves(result, p, n) if r["feasible"]]
    return [
        f"- Decoding realisation, per-prompt normalisation: **{strict['runs_reached']}/"
        f"{strict['runs']}** palette-seed runs reach every level within the 95 % interval of "
        f"the fresh estimate ({strict['checks_reached']}/{strict['checks']} value checks); "
        f"{strict['runs_reached_both']}/{strict['runs']} runs "
        f"({strict['checks_reached_both']}/{strict['checks']} checks) when the interval also "
        "carries the solver's own uncertainty (lambda is fitted on finite reference samples).",
        f"- The pooled dual's lambdas, decoded the same way: {pooled['runs_reached']}/"
        f"{pooled['runs']} runs ({pooled['checks_reached']}/{pooled['checks']} checks).",
        f"- One-round sequential alignment's lambdas, decoded: {seq['runs_reached']}/"
        f"{seq['runs']} runs reach every level ({seq['checks_reached']}/{seq['checks']} "
        "checks).",
        f"- Infeasible palettes declared infeasible: {infeasible}/"
        f"{len(INFEASIBLE) * len(NORMS) * len(result['per_seed'])} (palette x normalisation x "
        "seed), each with its reason.",
        f"- Largest relative difference between the solver's lambda and scipy's L-BFGS-B on "
        f"the same dual: {max(diffs):.1e} (bound 1e-3).",
        f"- Solve over {timing['samples']} samples x {len(timing['values'])} values: at most "
        f"{slowest:.3f} s (bound 5 s). Whole benchmark: {result['seconds'] / 60:.1f} min "
        "(bound 20 min).",
    ]


def render(result: dict[str, Any]) -> str:
    """The whole section: setup, headline, then one table per claim."""
    bench = result["settings"]
    first = result["per_seed"][0]
    tuned = ", ".join(f"{f['method']} ({f['epochs']} epochs, lr {f['lr']:g}"
                      + (f", beta {f['beta']:g})" if f["method"] == "dpo" else ")")
                      for f in result["finetune_settings"])
    setup = SETUP.format(
        prompts=bench["prompts"], n=bench["per_prompt"], fresh=bench["fresh_prompts"],
        seeds=len(result["per_seed"]), values=", ".join(bench["values"]),
        sd=", ".join(f"{v} {sd:.3g}" for v, sd in zip(bench["values"], first["reward_sd"],
                                                        strict=True)),
        lm=(f"built in {result['lm_seconds']:.0f} s" if result["lm_seconds"] > 1
            else "reused from the cache; building it takes about 35 s"),
        tuned=tuned or "none", outputs=bench["finetune_outputs"],
        palette=bench["finetune_palette"], randoms=bench["random_lambdas"])
    timing = result["timing"]
    parts = [
        "## MAP: multi-human-value alignment palette (issue 14)", "", setup, "",
        "Reproduce: `.venv/bin/python bench/bench_map.py --out docs/benchmarks/map.md` (full "
        "result in `runs/bench-map.json`).", "", *_headline(result), "",
        "### Solver and feasibility", "",
        SOLVER_NOTE.format(n=bench["prompts"] * bench["per_prompt"]), "", *solver_table(result), "",
        "Why the infeasible palettes are infeasible, as the solver says it:", "",
        *infeasible_reasons(result), "",
        "### Decoding realisation on fresh generations", "", DECODE_NOTE, "",
        *decode_table(result, "per-prompt"), "",
        "Pooled normalisation (the dual exactly as the MAP paper writes it), same decoder:", "",
        *decode_table(result, "pooled"), "",
        "### Sequential alignment against MAP", "", SEQUENTIAL_NOTE, "",
        "Per-prompt normalisation:", "", *sequential_table(result, "per-prompt"), "",
        "Pooled normalisation:", "", *sequential_table(result, "pooled"), "",
        "### Random lambdas (per-prompt normalisation)", "", RANDOM_NOTE, "",
        *random_table(result, "per-prompt"), "",
        "### Automatic palette adjustment", "", ADJUST_NOTE, "", *_adjustment(result), "",
        "### Fine-tuning realisation", "",
        FINETUNE_NOTE.format(palette=bench["finetune_palette"]), "", *finetune_table(result), "",
        f"### Solve time over {timing['samples']} samples x {len(timing['values'])} values",
        "", TIMING_NOTE.format(prompts=bench["timing_prompts"], n=bench["timing_per_prompt"],
                               repeats=bench["timing_repeats"],
                               generation=timing["generation_seconds"]), "",
        *_timing(result), "",
    ]
    return "\n".join(parts)


SETUP = """Built-in reference LM: a 2-layer GPT-2 (width 128, word-level tokenizer) trained here on
6,000 generated customer remarks about banking ({lm}).
Values: {values} (built-in; reward standard deviations on p0 {sd}). Per seed: {prompts}
built-in prompts x {n} continuations from p0 as the reference samples; separately {fresh}
fresh prompts x {n} fresh candidates (the decoder's m = {n}); {seeds} seeds; medians
(min-max) over seeds. Palettes: levels at each value's quantiles of the reference rewards
(q70 = all three at their 70 % quantile; q90-70-50 = 90 %, 70 %, 50 %); infeasible ones
set beyond the samples. Random lambdas: {randoms} per palette. Fine-tuning ({palette}, the
per-prompt lambda): {tuned}, measured on {outputs} fresh outputs per fresh prompt. Machine:
the shared 2-core CPU (other engineers' jobs running), torch on one intra-op thread (tiny
models run fastest so on a busy CPU), numpy on both cores."""

SOLVER_NOTE = """Projected Newton to a gradient tolerance of 1e-9 reward standard deviations
(`pooled`: the paper's g(lambda) = -log mean_j exp(lambda . r_j) + lambda . c; `per-prompt`:
each prompt's samples normalised separately, the dual of the conditional problem and what
resampling m candidates per prompt realises). KL and ESS are estimated on the reference
samples; ESS is out of {n} samples. scipy: L-BFGS-B on the same objective written
independently (`reference_solver.py`), compared over the coordinates scipy finds active."""

DECODE_NOTE = """For each fresh prompt, one of its m fresh candidates drawn with probabilities
softmax(lambda . r); "realised" is the mean over the fresh prompts of the chosen
continuations' rewards with its 95 % half-width (1.96 se over prompts); "reached" counts
seeds where target <= realised + half-width. Where lambda_i > 0 the solver sets the
expected level exactly to the target, so a calibrated decoder misses the fresh interval
about 2.5 % of the time by chance alone; "both intervals" also adds the solver's 95 %
half-width for the level on the reference samples (in quadrature)."""

SEQUENTIAL_NOTE = """Sequential alignment = exact coordinate ascent on the same dual, one value at
a time in the order listed (step i re-aligns the current model to value i alone). A value
counts as missed when its level is more than 1e-3 sd short of the target."""

RANDOM_NOTE = """Lambdas drawn uniformly in [0, 2 max lambda*] per coordinate (standardised
units); MAP's KL is the least of any distribution meeting the palette, so no random lambda
that meets it may pay less."""

ADJUST_NOTE = """From the q50 palette: the largest reachable positiveness with the other two
levels kept (exact on the samples, a linear program), and how far along the segment from
q50 toward q99 the palette stays reachable (rho in [0, 1])."""

FINETUNE_NOTE = """Fine-tuning realisations of the {palette} palette's per-prompt lambda,
trained on the seed's reference samples, measured on fresh prompts (no setting was tuned to
pass: these are reported as measured)."""

TIMING_NOTE = """{prompts} built-in prompts x {n} continuations scored on all six built-in
values ({generation:.0f} s to generate and score); palette at each value's mean + 0.3 sd;
{repeats} solves per normalisation, seconds as median (min-max)."""
