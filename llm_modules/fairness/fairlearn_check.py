"""The reference for the single-model LP: fairlearn's ThresholdOptimizer with equalized odds,
run on the same scores (it searches a 1,000-point grid on the ROC hulls; the LP is exact)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


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
        column = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        # fairlearn exposes the randomised decision's distribution only privately.
        pmf = self.optimizer_._pmf_predict(column, sensitive_features=np.asarray(group))
        return pmf[:, 1]
