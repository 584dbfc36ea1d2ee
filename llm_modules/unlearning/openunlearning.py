"""open-unlearning's evaluation files: read a retain model's TOFU_EVAL.json as the reference,
and write results in the same layout (TOFU_EVAL.json with per-index values, TOFU_SUMMARY.json).

Its layout: one key per metric, each `{"agg_value": x, "value_by_index": {"0": {...}}}`.
The retain model's file supplies forget quality's reference truth ratios
(`forget_truth_ratio.value_by_index[*].score`) and privleak's reference AUC
(`mia_min_k.agg_value`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import DataError
from llm_modules.unlearning.metrics import (
    Scores,
    forget_quality,
    privleak,
    truth_ratio_score,
)

# Our split names -> open-unlearning's metric-name prefixes.
PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf",
          "world": "wf", "holdout": "holdout"}


@dataclass(frozen=True)
class RetainLogs:
    """What open-unlearning's forget quality and privleak read from the retain model's logs."""

    forget_truth_ratios: list[float] | None
    mia_auc: float | None


def read_retain_logs(path: str | Path) -> RetainLogs:
    """Parse a retain model's TOFU_EVAL.json; a file with neither entry is a DataError."""
    where = Path(path)
    if not where.is_file():
        raise DataError(f"retain logs {str(path)!r} do not exist")
    try:
        logs = json.loads(where.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(logs, dict):
        raise DataError(f"{where}: expected open-unlearning's TOFU_EVAL.json (a JSON object)")
    ratios = None
    entry = logs.get("forget_truth_ratio")
    if isinstance(entry, dict) and isinstance(entry.get("value_by_index"), dict):
        try:
            ratios = [float(v["score"]) for v in entry["value_by_index"].values()]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: forget_truth_ratio.value_by_index entries need a "
                            "numeric 'score'") from exc
    auc = None
    mia = logs.get("mia_min_k")
    if isinstance(mia, dict) and mia.get("agg_value") is not None:
        auc = float(mia["agg_value"])
    if ratios is None and auc is None:
        raise DataError(f"{where}: has neither forget_truth_ratio.value_by_index nor "
                        "mia_min_k.agg_value (run open-unlearning's TOFU eval on the retain "
                        "model with forget_quality and privleak)")
    return RetainLogs(ratios, auc)


def metrics_from_retain_logs(scores: Scores, metrics: dict[str, float],
                             logs: RetainLogs) -> dict[str, float]:
    """forget_quality and privleak against the retain model's logged values."""
    out = dict(metrics)
    if logs.forget_truth_ratios is not None and "forget" in scores \
            and scores["forget"].has_truth_ratio:
        out["forget_quality"] = forget_quality(scores["forget"].truth_ratios(),
                                               logs.forget_truth_ratios)
    if logs.mia_auc is not None and "mia_auc" in metrics:
        out["privleak"] = privleak(metrics["mia_auc"], logs.mia_auc)
    return out


def _by_index(values: list[Any], key: str) -> dict[str, dict[str, Any]]:
    return {str(i): {key: float(v)} for i, v in enumerate(values)}


def _entry(agg: float, by_index: dict | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"agg_value": float(agg)}
    if by_index is not None:
        entry["value_by_index"] = by_index
    return entry


def eval_logs(scores: Scores, metrics: dict[str, float]) -> dict[str, Any]:
    """Our scores and metrics under open-unlearning's TOFU metric names and layout."""
    logs: dict[str, Any] = {}
    for split, s in scores.items():
        prefix = PREFIX.get(split, split)
        probs = np.exp(-np.asarray(s.answer_nll, dtype=float))
        logs[f"{prefix}_Q_A_Prob"] = _entry(float(np.mean(probs)), {
            str(i): {"prob": float(p), "avg_loss": float(n)}
            for i, (p, n) in enumerate(zip(probs, s.answer_nll, strict=True))
        })
        logs[f"{prefix}_Q_A_ROUGE"] = _entry(float(np.mean(s.rouge)),
                                             _by_index(s.rouge, "rougeL_recall"))
        if s.answer_based and s.perturbed_nll:
            logs[f"{prefix}_Q_A_Prob_normalised"] = _entry(s.probability())
        if s.has_truth_ratio:
            name = "forget_truth_ratio" if split == "forget" else f"{prefix}_Truth_Ratio"
            ratios = s.truth_ratios()
            logs[name] = _entry(truth_ratio_score(ratios, forget=split == "forget"),
                                _by_index(list(ratios), "score"))
        if split == "forget":
            logs["extraction_strength"] = _entry(float(np.mean(s.extraction)),
                                                 _by_index(s.extraction, "score"))
    for ours, theirs in (("mia_auc", "mia_min_k"), ("mia_loss_auc", "mia_loss"),
                         ("mia_zlib_auc", "mia_zlib"),
                         ("mia_min_k_plus_plus_auc", "mia_min_k_plus_plus")):
        if ours in metrics:
            logs[theirs] = _entry(metrics[ours])
    for name in ("forget_quality", "model_utility", "privleak"):
        if name in metrics:
            logs[name] = _entry(metrics[name])
    return logs


SUMMARY = ("forget_quality", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "model_utility",
           "privleak", "extraction_strength", "forget_truth_ratio", "mia_min_k")


def write_results(out: str | Path, scores: Scores, metrics: dict[str, float]) -> Path:
    """DIR/TOFU_EVAL.json and DIR/TOFU_SUMMARY.json, as open-unlearning writes them."""
    where = Path(out)
    where.mkdir(parents=True, exist_ok=True)
    logs = eval_logs(scores, metrics)
    (where / "TOFU_EVAL.json").write_text(json.dumps(logs, indent=4))
    summary = {name: logs[name]["agg_value"] for name in SUMMARY if name in logs}
    (where / "TOFU_SUMMARY.json").write_text(json.dumps(summary, indent=4))
    return where

