"""Group fairness metrics for binary decisions.

`decision` may be 0/1 decisions or, for a randomised classifier, P(decision = 1) per row:
the metrics are then the exact expected rates, free of the sampling noise of one draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def group_rates(
    y: np.ndarray, decision: np.ndarray, group: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per group: true-positive rate, false-positive rate, selection rate and size."""
    y, decision, group = np.asarray(y), np.asarray(decision, dtype=np.float64), np.asarray(group)
    rates: dict[str, dict[str, float]] = {}
    for g in np.unique(group):
        member = group == g
        pos, neg = member & (y == 1), member & (y == 0)
        rates[str(g)] = {
            "tpr": float(decision[pos].mean()) if pos.any() else float("nan"),
            "fpr": float(decision[neg].mean()) if neg.any() else float("nan"),
            "selection_rate": float(decision[member].mean()),
            "count": int(member.sum()),
        }
    return rates


def _spread(values: list[float]) -> float:
    return float(np.nanmax(values) - np.nanmin(values))


def equalized_odds_difference(y: np.ndarray, decision: np.ndarray, group: np.ndarray) -> float:
    """max(TPR gap, FPR gap) between groups (fairlearn's between-groups definition)."""
    rates = group_rates(y, decision, group).values()
    return max(_spread([r["tpr"] for r in rates]), _spread([r["fpr"] for r in rates]))


def demographic_parity_difference(decision: np.ndarray, group: np.ndarray) -> float:
    """Largest gap in selection rate between groups."""
    decision, group = np.asarray(decision, dtype=np.float64), np.asarray(group)
    return _spread([float(decision[group == g].mean()) for g in np.unique(group)])


def accuracy(y: np.ndarray, decision: np.ndarray) -> float:
    """(Expected) fraction of correct decisions."""
    y, decision = np.asarray(y), np.asarray(decision, dtype=np.float64)
    return float(np.mean(y * decision + (1 - y) * (1 - decision)))


def balanced_accuracy(y: np.ndarray, decision: np.ndarray) -> float:
    """(Expected) mean of TPR and TNR."""
    y, decision = np.asarray(y), np.asarray(decision, dtype=np.float64)
    return float(0.5 * (decision[y == 1].mean() + (1 - decision[y == 0]).mean()))


def fairness_report(y: np.ndarray, decision: np.ndarray, group: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, equalized-odds and demographic-parity differences, and
    per-group rates."""
    return {
        "accuracy": accuracy(y, decision),
        "balanced_accuracy": balanced_accuracy(y, decision),
        "equalized_odds_difference": equalized_odds_difference(y, decision, group),
        "demographic_parity_difference": demographic_parity_difference(decision, group),
        "groups": group_rates(y, decision, group),
    }
