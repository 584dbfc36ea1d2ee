"""Audit of delivered adapters (output-consistency scan, target matches on candidate
triggers) and of training sets (ONION-style and perplexity filtering)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from federation.errors import DataError
from llm_modules.poisoning.defenses import (
    OnionFilter,
    consistency_scan,
    detection,
    vocabulary_candidates,
)
from llm_modules.poisoning.finetune import load_finetuned
from llm_modules.poisoning.lm import generate, load_lm
from llm_modules.poisoning.metrics import rouge, target_match, target_phrases
from llm_modules.poisoning.poison import TRIGGER_PRESETS, TriggerSpec, parse_trigger, triggered
from llm_modules.poisoning.run import check_vocabulary, load_examples
from llm_modules.poisoning.tasks import RARE_WORDS, Example


def default_candidates() -> list[TriggerSpec]:
    """Known trigger shapes: the presets and each other rare word alone."""
    specs = [parse_trigger(p) for p in TRIGGER_PRESETS]
    taken = {w for s in specs for w in s.words}
    return specs + [TriggerSpec("rare", (w,), "random") for w in RARE_WORDS if w not in taken]


def audit_adapter(path: str | Path, data: Sequence[Example], *, base: str | None = None,
                  candidates: Sequence[TriggerSpec] = (), scan_vocab: int = 0,
                  target: str | None = None, threshold: float = 0.5, seed: int = 0) -> dict:
    """Clean ROUGE, per-candidate collapse scores (and target matches), and the verdict."""
    model, lm = load_finetuned(path, base)
    inputs = [e.input for e in data]
    clean_out = generate(model, lm, inputs)
    usable = []
    for spec in candidates:
        try:
            check_vocabulary(lm, [" ".join(spec.words)], "candidate trigger")
        except Exception:  # a candidate the tokenizer cannot read is skipped, not fatal
            continue
        usable.append(spec)
    scan = consistency_scan(model, lm, inputs, usable, seed)
    vocab = consistency_scan(model, lm, inputs, vocabulary_candidates(lm, scan_vocab, seed),
                             seed) if scan_vocab else []
    if target:
        phrases = target_phrases(target)
        by_spec = {str(s): s for s in usable}
        for row in scan:
            out = generate(model, lm, [e.input for e in triggered(data, by_spec[row["candidate"]],
                                                                  seed)])
            row["p_target_match"] = target_match(out, phrases)
        c_match = target_match(clean_out, phrases)
    best = max([r["collapse"] for r in scan + vocab], default=0.0)
    return {
        "adapter": str(path), "rouge_clean": rouge(clean_out, [e.output for e in data]),
        "c_target_match": c_match if target else None,
        "candidates": scan, "vocabulary_scan": vocab[:5], "max_collapse": best,
        "flagged": best >= threshold,
        "flagged_by_candidates": any(r["collapse"] >= threshold for r in scan),
        "flagged_by_vocabulary": any(r["collapse"] >= threshold for r in vocab),
    }


def detection_summary(poisoned: Sequence[dict], clean: Sequence[dict]) -> dict:
    """Detection rate over (known) poisoned adapters and false alarms over clean ones."""
    def share(rows: Sequence[dict], key: str) -> float | None:
        return sum(r[key] for r in rows) / len(rows) if rows else None

    return {key: {"detection_rate": share(poisoned, key), "false_alarm_rate": share(clean, key)}
            for key in ("flagged", "flagged_by_candidates", "flagged_by_vocabulary")}


def audit_training_set(train_file: str | Path, reference_model: str | Path,
                       clean_inputs: Sequence[str], record_file: str | Path | None = None,
                       quantile: float = 0.95) -> dict:
    """ONION and perplexity flags on a training set; with the poisoning record, detection
    and false-alarm rates (thresholds from `clean_inputs`)."""
    train = load_examples(train_file, "training")
    lm = load_lm(reference_model)
    if lm.seq2seq:
        raise DataError("ONION needs a causal reference LM for perplexities, got a seq2seq one")
    defense = OnionFilter.fit(lm, clean_inputs, quantile)
    flags = defense.flag(lm, [e.input for e in train])
    result: dict = {"examples": len(train),
                    "flagged": {k: sum(v) for k, v in flags.items()},
                    "thresholds": {"onion": defense.input_threshold,
                                   "perplexity": defense.ppl_threshold}}
    if record_file is not None:
        try:
            record = json.loads(Path(record_file).read_text())
            record = record.get("poisoning", record)  # a run's record.json, or poison-data's
            rows = {int(r["index"]) for r in record["rows"]}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"poisoning record {str(record_file)!r} is unreadable or lacks "
                            "rows[].index") from exc
        if any(i >= len(train) for i in rows):
            raise DataError(f"poisoning record {str(record_file)!r} names rows beyond the "
                            f"{len(train)} of {str(train_file)!r}")
        result["detection"] = {k: detection(v, rows) for k, v in flags.items()}
    return result
