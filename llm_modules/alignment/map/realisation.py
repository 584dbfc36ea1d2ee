"""`align realise`: turn a solved palette into outputs (decoding) or a model (fine-tuning)
and measure each value on fresh generations against the palette."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from llm_modules.alignment.map.finetune import FinetuneSettings, finetune_realisation
from llm_modules.alignment.map.realise import (
    decode_realisation,
    estimate_levels,
    fresh_candidates,
)
from llm_modules.alignment.map.rewards import ScoringContext
from llm_modules.alignment.map.samples import read_samples
from llm_modules.alignment.map.sampling import (
    GenerationSettings,
    load_prompts,
    scorers_from_header,
)
from llm_modules.models import load_causal_lm


@dataclass(frozen=True)
class RealiseRequest:
    """What to realise and how to measure it (the `align realise` options)."""

    samples: str
    method: str  # decode | dpo | weighted-sft
    out: str
    model: str | None = None  # default: the model named in the samples header
    prompts: str = "builtin"
    prompt_count: int = 500
    prompt_seed: int = 2
    m: int | None = None  # decode: candidates per prompt (default: the samples' n)
    eval_n: int = 4  # fine-tuning: fresh outputs per prompt
    seed: int = 0


def _write_rows(path: Path, candidates: Any, rows: np.ndarray, values: tuple[str, ...]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            record = {"prompt": candidates.prompts[candidates.groups[row]],
                      "continuation": candidates.continuations[row],
                      "rewards": dict(zip(values, candidates.rewards[row].tolist(),
                                          strict=True))}
            handle.write(json.dumps(record) + "\n")


def realise(
    args: RealiseRequest, solution: dict[str, Any], finetune: FinetuneSettings,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Realise `solution` as `args.method` says; writes realised.jsonl and summary.json
    (and model/ when fine-tuning) under `args.out`; returns the summary."""
    samples = read_samples(args.samples)
    values, target = tuple(solution["values"]), np.asarray(solution["palette"])
    lam = np.asarray(solution["lambda"])
    samples.columns(values, where=args.samples)  # the samples must carry every value
    if not (args.model or samples.header.get("model")):
        raise Pv4fadError(f"{args.samples}: the header names no model; give --model")
    model_dir = Path(args.model or samples.header["model"])
    model, tokenizer = load_causal_lm(model_dir)
    # Values are defined by the reference model, also when scoring a fine-tuned one.
    context = ScoringContext(model_dir, loaded=(model, tokenizer))
    scorers = scorers_from_header(samples.header, values, context)
    prompts = load_prompts(args.prompts, args.prompt_count, args.prompt_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"method": args.method, "values": list(values),
                               "palette": target.tolist(), "lambda": lam.tolist(),
                               "reference_model": str(model_dir), "prompts": len(prompts),
                               "normalise": solution["normalise"]}
    if args.method == "decode":
        m = args.m or samples.header.get("generation", {}).get("n_per_prompt")
        if not isinstance(m, int) or m < 1:
            raise Pv4fadError(f"{args.samples}: the header gives no continuations per "
                              "prompt; give --m")
        settings = GenerationSettings(n_per_prompt=m, seed=args.seed)
        log(f"decoding: {m} fresh candidates for each of {len(prompts)} prompts")
        candidates = fresh_candidates(model, tokenizer, prompts, scorers, settings, log)
        chosen, before, after = decode_realisation(candidates, lam, values, target, args.seed)
        _write_rows(out / "realised.jsonl", candidates, chosen, values)
        summary["candidates_per_prompt"] = m
    else:
        settings = GenerationSettings(n_per_prompt=args.eval_n, seed=args.seed)
        log("fresh generations from the reference model (before)")
        reference = fresh_candidates(model, tokenizer, prompts, scorers, settings, log)
        before = estimate_levels(reference.rewards, reference.groups, values, target)
        tuned, tuned_tokenizer = load_causal_lm(model_dir)
        saved = finetune_realisation(tuned, tuned_tokenizer, samples, lam, values, finetune,
                                     out / "model", log)
        log(f"fine-tuned model saved to {saved}; fresh generations from it (after)")
        fresh = fresh_candidates(tuned, tuned_tokenizer, prompts, scorers, settings, log)
        after = estimate_levels(fresh.rewards, fresh.groups, values, target)
        _write_rows(out / "realised.jsonl", fresh, np.arange(len(fresh.continuations)), values)
        summary.update({"model_out": str(saved), "outputs_per_prompt": args.eval_n,
                        "finetune": vars(finetune)})
    summary.update({"before": before.to_json(), "after": after.to_json()})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
