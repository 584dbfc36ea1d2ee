"""The reference for the single-model LP: fairlearn's ThresholdOptimizer with equalized odds,
run on the same scores (it searches a 1,000-point grid on the ROC hulls; the LP is exact)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from llm_modules.fairness.equalized_odds import FairnessError


class ScorePassthrough(ClassifierMixin, BaseEstimator):
    """A 'model' whose prediction is its one input column: lets fairlearn post-process
    scores computed elsewhere (here: by the federated shards)."""

    def fit(self, features: np.ndarray, y: np.ndarray) -> ScorePassthrough:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64)[:, 0]


class FairlearnEqualizedOdds:
    """ThresholdOptimizer(constraints="equalized_odds") on scores, with the objective named
    as in EqualizedOddsPostProcessor; `predict_proba` is its exact P(decision = 1)."""

    def __init__(self, objective: str = "accuracy") -> None:
        self.objective = objective

    def fit(self, scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> FairlearnEqualizedOdds:
        from fairlearn.postprocessing import ThresholdOptimizer

        column = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        estimator = ScorePassthrough().fit(column, y)
        self.optimizer_ = ThresholdOptimizer(
            estimator=estimator,
            constraints="equalized_odds",
            objective=f"{self.objective}_score",
            prefit=True,
            predict_method="predict",
        ).fit(column, np.asarray(y), sensitive_features=np.asarray(group))
        return self

    def predict_proba(self, scores: np.ndarray, group: np.ndarray) -> np.ndarray:
        """P(decision = 1) from the fitted public `interpolation_dict`: per group, with
        probability p0 threshold operation0, with p1 operation1, and (when present) with
        p_ignore the constant prediction instead."""
        values = np.asarray(scores, dtype=np.float64)
        group = np.asarray(group)
        proba = np.full(len(values), np.nan)
        rules = self.optimizer_.interpolated_thresholder_.interpolation_dict
        for key, rule in rules.items():
            member = np.array([str(g) == str(key) for g in group.tolist()], dtype=bool)
            mixed = rule.p0 * np.asarray(rule.operation0(values), dtype=np.float64)
            mixed = mixed + rule.p1 * np.asarray(rule.operation1(values), dtype=np.float64)
            if "p_ignore" in rule:
                mixed = rule.p_ignore * rule.prediction_constant + (1 - rule.p_ignore) * mixed
            proba[member] = mixed[member]
        if np.isnan(proba).any():
            unknown = sorted(set(group[np.isnan(proba)].tolist()))
            raise FairnessError(f"fairlearn reference: groups {unknown} were not seen in fit")
        return proba
