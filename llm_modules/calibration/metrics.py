"""Metrics of calibrated predictions: accuracy, macro-F1, expected calibration error with a
reliability diagram, per-example entropy, and the spread of accuracy across prompts."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

ECE_BINS = 10


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over classes of F1 (a class never predicted nor present counts 0)."""
    predicted = np.argmax(probs, axis=1)
    scores = []
    for c in range(probs.shape[1]):
        tp = np.sum((predicted == c) & (labels == c))
        fp = np.sum((predicted == c) & (labels != c))
        fn = np.sum((predicted != c) & (labels == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin (lo, hi]: count, mean confidence, accuracy.

    Confidence is the top probability; a bin holds confidences in (lo, hi], as LinC's code
    bins them (a confidence of exactly 0 cannot occur: the top of K probabilities >= 1/K).
    """
    confidence = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        count = int(inside.sum())
        rows.append({
            "lo": float(lo), "hi": float(hi), "count": count,
            "confidence": float(confidence[inside].mean()) if count else None,
            "accuracy": float(correct[inside].mean()) if count else None,
        })
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of |B|/n * |accuracy(B) - confidence(B)|, 10 equal-width bins."""
    n = len(labels)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"])
                     for r in reliability(probs, labels, bins) if r["count"]))


def entropy_bits(probs: np.ndarray) -> np.ndarray:
    """Per-example Shannon entropy of the calibrated distribution, in bits."""
    p = np.clip(probs, 1e-300, 1.0)
    return -(probs * np.log2(p)).sum(axis=1)


def entropy_histogram(probs: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Counts of per-example entropy over [0, log2 K] in equal-width bins."""
    top = float(np.log2(probs.shape[1]))
    counts, edges = np.histogram(np.clip(entropy_bits(probs), 0.0, top), bins=bins,
                                 range=(0.0, top))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def report(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The headline metrics of one set of calibrated predictions."""
    return {
        "accuracy": accuracy(probs, labels),
        "macro_f1": macro_f1(probs, labels),
        "ece": expected_calibration_error(probs, labels),
        "mean_entropy_bits": float(entropy_bits(probs).mean()),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Sensitivity of accuracy across prompt variants: standard deviation and max - min."""
    return {"std": float(statistics.pstdev(values)), "range": float(max(values) - min(values)),
            "mean": float(statistics.fmean(values))}
