"""Equalized-odds post-processing (Hardt, Price and Srebro, 2016) as a linear program.

The predictor's output takes levels v_1 < ... < v_K. Per group g the derived predictor
says 1 with probability p[g, k] at level k. It minimises the expected error on the fitting
data subject to equal TPR and equal FPR in every group (scipy's linprog, HiGHS). With
`monotone=True`, p[g, .] is non-decreasing in the level, so each group's decision is a
randomised threshold: the feasible (FPR, TPR) set is the convex hull of that group's ROC
points, as in Hardt et al.'s score-based derived predictor and fairlearn's
ThresholdOptimizer; with `monotone=False` any map from levels to probabilities is allowed
(sensible only for a few levels, e.g. a binary prediction or a vote count). The loss is
the error rate (`objective="accuracy"`) or the balanced error rate ("balanced_accuracy",
each class weighted by the inverse of its frequency).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from federation.errors import Pv4fadError
from llm_modules.fairness.metrics import accuracy

OBJECTIVES = ("accuracy", "balanced_accuracy")


class FairnessError(Pv4fadError):
    """Post-processing input is unusable (shapes, labels, a group missing a class)."""


def check_inputs(
    scores: np.ndarray, y: np.ndarray | None, group: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Validate at the edge: 1-d, equal lengths, labels in {0, 1}."""
    scores, group = np.asarray(scores, dtype=np.float64), np.asarray(group)
    if scores.ndim != 1 or group.ndim != 1 or len(scores) != len(group):
        raise FairnessError(
            f"{where}: expected 1-d scores and group of equal length, got shapes "
            f"{scores.shape} and {group.shape}"
        )
    if y is not None:
        y = np.asarray(y)
        if y.shape != scores.shape or not np.isin(y, (0, 1)).all():
            raise FairnessError(f"{where}: labels must be 0/1 with shape {scores.shape}")
        y = y.astype(np.int64)
    return scores, y, group


class EqualizedOddsPostProcessor:
    """scikit-learn-style: `fit(scores, y, group)`, `predict_proba(scores, group)` gives
    P(decision = 1), `predict(scores, group, random_state)` draws the decisions."""

    def __init__(
        self,
        monotone: bool = True,
        levels: np.ndarray | None = None,
        objective: str = "accuracy",
    ) -> None:
        self.monotone = monotone
        self.levels = levels
        self.objective = objective

    def fit(
        self, scores: np.ndarray, y: np.ndarray, group: np.ndarray
    ) -> EqualizedOddsPostProcessor:
        if self.objective not in OBJECTIVES:
            raise FairnessError(
                f"equalized-odds objective {self.objective!r}: expected one of {OBJECTIVES}"
            )
        scores, labels, group = check_inputs(scores, y, group, "equalized-odds fit")
        y = np.asarray(labels)
        self.levels_ = np.unique(scores) if self.levels is None else np.asarray(self.levels, float)
        self.groups_ = np.unique(group)
        level = self._level_index(scores)
        g_index = np.searchsorted(self.groups_, group)
        counts = np.zeros((len(self.groups_), len(self.levels_), 2))
        np.add.at(counts, (g_index, level, y), 1.0)
        for g, name in enumerate(self.groups_):
            for label in (0, 1):
                if counts[g, :, label].sum() == 0:
                    kind = "positive" if label else "negative"
                    raise FairnessError(
                        f"equalized-odds fit: group {name.item()!r} has no {kind} labels, so its "
                        "TPR/FPR is undefined; merge it or add data"
                    )
        self.p_ = self._solve(counts)
        return self

    def _level_index(self, scores: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.levels_, scores, side="right") - 1
        return np.clip(index, 0, len(self.levels_) - 1)

    def _solve(self, counts: np.ndarray) -> np.ndarray:
        """The LP over p[g, k] (flattened row-major); returns p with shape (G, K)."""
        n_groups, n_levels, _ = counts.shape
        # Weight of one false positive / false negative in the expected loss.
        if self.objective == "balanced_accuracy":
            w_neg, w_pos = 0.5 / counts[:, :, 0].sum(), 0.5 / counts[:, :, 1].sum()
        else:
            w_neg = w_pos = 1.0 / counts.sum()
        cost = (w_neg * counts[:, :, 0] - w_pos * counts[:, :, 1]).ravel()
        # Rate of level k among group g's positives (TPR weights) and negatives (FPR).
        tpr_w = counts[:, :, 1] / counts[:, :, 1].sum(axis=1, keepdims=True)
        fpr_w = counts[:, :, 0] / counts[:, :, 0].sum(axis=1, keepdims=True)
        equalities = []
        for weights in (tpr_w, fpr_w):
            for g in range(1, n_groups):
                row = np.zeros((n_groups, n_levels))
                row[g], row[0] = weights[g], -weights[0]
                equalities.append(row.ravel())
        inequalities = []
        if self.monotone:
            for g in range(n_groups):
                for k in range(n_levels - 1):
                    row = np.zeros((n_groups, n_levels))
                    row[g, k], row[g, k + 1] = 1.0, -1.0
                    inequalities.append(row.ravel())
        result = linprog(
            cost,
            A_ub=np.array(inequalities) if inequalities else None,
            b_ub=np.zeros(len(inequalities)) if inequalities else None,
            A_eq=np.array(equalities) if equalities else None,
            b_eq=np.zeros(len(equalities)) if equalities else None,
            bounds=(0.0, 1.0),
            method="highs",
        )
        if not result.success:
            raise FairnessError(f"equalized-odds LP failed: {result.message}")
        # 1 - expected loss on the fitting data: (balanced) accuracy of the derived predictor.
        self.fit_score_ = float(1.0 - (result.fun + w_pos * counts[:, :, 1].sum()))
        return np.clip(result.x.reshape(n_groups, n_levels), 0.0, 1.0)

    def predict_proba(self, scores: np.ndarray, group: np.ndarray) -> np.ndarray:
        scores, _, group = check_inputs(scores, None, group, "equalized-odds predict")
        known = np.isin(group, self.groups_)
        if not known.all():
            raise FairnessError(
                f"equalized-odds predict: groups {sorted(set(group[~known].tolist()))} were not "
                f"seen in fit (known: {self.groups_.tolist()})"
            )
        return self.p_[np.searchsorted(self.groups_, group), self._level_index(scores)]

    def predict(
        self, scores: np.ndarray, group: np.ndarray, random_state: int | None = None
    ) -> np.ndarray:
        proba = self.predict_proba(scores, group)
        return (np.random.default_rng(random_state).random(len(proba)) < proba).astype(np.int64)

    def score(self, scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
        """Expected accuracy of the randomised decisions."""
        return accuracy(y, self.predict_proba(scores, group))
