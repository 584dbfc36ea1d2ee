"""fairlearn-shaped front ends: a scikit-learn estimator for FairSISA, a MetricFrame-style
per-group table, and the accuracy / equalized-odds trade-off of each method.

`FairSISAClassifier` follows fairlearn's ThresholdOptimizer conventions: `fit(X, y,
sensitive_features=...)`, `predict_proba(X, sensitive_features=...)` with two columns
(P(decision = 0), P(decision = 1)), and `predict` drawing the randomised decision from
`random_state`. X is the ensemble's votes or probabilities (rows x voters). Parameters are
plain constructor arguments, so `get_params`, `set_params` and `clone` work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from llm_modules.fairness.fairsisa import FairSISA
from llm_modules.fairness.metrics import (
    accuracy,
    balanced_accuracy,
    equalized_odds_difference,
)


class FairSISAClassifier(ClassifierMixin, BaseEstimator):
    """FairSISA as a scikit-learn classifier over vote matrices."""

    def __init__(
        self,
        method: str = "votes",
        objective: str = "accuracy",
        monotone: bool | None = None,
        fill: str = "nearest",
        tolerance: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.method = method
        self.objective = objective
        self.monotone = monotone
        self.fill = fill
        self.tolerance = tolerance
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, *, sensitive_features: np.ndarray
            ) -> FairSISAClassifier:
        self.post_ = FairSISA(
            self.method, self.monotone, self.objective, self.fill, self.tolerance
        ).fit(X, y, sensitive_features)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict_proba(self, X: np.ndarray, *, sensitive_features: np.ndarray,
                      voters: Sequence[int] | None = None) -> np.ndarray:
        positive = self.post_.predict_proba(X, sensitive_features, voters)
        return np.stack([1.0 - positive, positive], axis=1)

    def predict(self, X: np.ndarray, *, sensitive_features: np.ndarray,
                voters: Sequence[int] | None = None) -> np.ndarray:
        return self.post_.predict(X, sensitive_features, self.random_state, voters)

    def score(self, X: np.ndarray, y: np.ndarray, sample_weight: Any = None, *,
              sensitive_features: np.ndarray | None = None) -> float:
        """Expected accuracy of the randomised decisions."""
        if sensitive_features is None:
            raise ValueError("FairSISAClassifier.score needs sensitive_features=")
        return accuracy(y, self.predict_proba(X, sensitive_features=sensitive_features)[:, 1])


def metric_frame(y: np.ndarray, decision: np.ndarray, group: np.ndarray) -> dict[str, Any]:
    """Per-group and overall accuracy, balanced accuracy, TPR, FPR, selection rate and count,
    plus the largest between-group difference of each (fairlearn MetricFrame's by_group,
    overall and difference()). `decision` may be P(decision = 1)."""
    y, decision, group = np.asarray(y), np.asarray(decision, float), np.asarray(group)

    def row(mask: np.ndarray) -> dict[str, float]:
        yy, dd = y[mask], decision[mask]
        pos, neg = yy == 1, yy == 0
        return {
            "accuracy": accuracy(yy, dd),
            "balanced_accuracy": balanced_accuracy(yy, dd) if pos.any() and neg.any()
            else float("nan"),
            "tpr": float(dd[pos].mean()) if pos.any() else float("nan"),
            "fpr": float(dd[neg].mean()) if neg.any() else float("nan"),
            "selection_rate": float(dd.mean()),
            "count": float(mask.sum()),
        }

    by_group = {str(g): row(group == g) for g in np.unique(group)}
    names = list(next(iter(by_group.values())))
    difference = {
        m: float(np.nanmax([r[m] for r in by_group.values()])
                 - np.nanmin([r[m] for r in by_group.values()]))
        for m in names if m != "count"
    }
    return {"by_group": by_group, "overall": row(np.ones(len(y), bool)),
            "difference": difference}


def render_metric_frame(frame: dict[str, Any]) -> str:
    names = list(frame["overall"])
    lines = ["| group | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    rows = [*frame["by_group"].items(), ("overall", frame["overall"]),
            ("difference", {**frame["difference"], "count": float("nan")})]
    for name, values in rows:
        cells = [f"{values[m]:.0f}" if m == "count" and not np.isnan(values[m])
                 else ("" if np.isnan(values[m]) else f"{values[m]:.3f}") for m in names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tradeoff(
    votes_fit: np.ndarray, y_fit: np.ndarray, group_fit: np.ndarray,
    votes_eval: np.ndarray, y_eval: np.ndarray, group_eval: np.ndarray,
    tolerances: Sequence[float] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    methods: Sequence[str] = ("constituent", "aggregate", "votes"),
    objective: str = "accuracy",
) -> dict[str, list[dict[str, float]]]:
    """Per method and EOD tolerance (the LP's bound on each group's TPR / FPR gap): accuracy
    and EOD on the evaluation rows."""
    curves: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        points = []
        for tol in tolerances:
            post = FairSISA(method, objective=objective, tolerance=tol).fit(
                votes_fit, y_fit, group_fit
            )
            decision = post.predict_proba(votes_eval, group_eval)
            points.append({
                "tolerance": float(tol), "accuracy": accuracy(y_eval, decision),
                "equalized_odds_difference": equalized_odds_difference(
                    y_eval, decision, group_eval
                ),
            })
        curves[method] = points
    return curves


def plot_tradeoff(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """Accuracy against EOD tolerance, one line per method (PNG at `path`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"constituent": "(a) per constituent", "aggregate": "(b) aggregate",
              "votes": "(c) vote count", "pattern": "joint pattern"}
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, points in curves.items():
        ax.plot([p["tolerance"] for p in points], [p["accuracy"] for p in points],
                marker="o", label=labels.get(method, method))
    ax.set_xlabel("EOD tolerance of the post-processor (calibration)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
