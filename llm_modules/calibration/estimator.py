"""A scikit-learn estimator over label probabilities: X is an [examples, K] array of an LM's
label probabilities, y the class indices; any calibrator of this package does the work, so
it composes with cross-validation, grid search and pipelines."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from llm_modules.calibration.calibrators import Calibrator, make_calibrator


class CalibratedICLClassifier(ClassifierMixin, BaseEstimator):
    """Predict classes from label probabilities through a calibrator.

    `method` is a calibrator name ("none", "contextual", "linc", "temperature", "platt");
    `p_cf` the content-free label probabilities (contextual, linc); `lr`, `epochs`, `seed`
    apply to linc.
    """

    def __init__(self, method: str = "linc", p_cf: np.ndarray | None = None, lr: float = 0.1,
                 epochs: int = 15, seed: int = 0) -> None:
        self.method = method
        self.p_cf = p_cf
        self.lr = lr
        self.epochs = epochs
        self.seed = seed

    def _calibrator(self) -> Calibrator:
        if self.method == "linc":
            return make_calibrator("linc", lr=self.lr, epochs=self.epochs, seed=self.seed)
        return make_calibrator(self.method)

    def fit(self, X: np.ndarray, y: np.ndarray) -> CalibratedICLClassifier:
        X = np.asarray(X, dtype=np.float64)
        self.classes_ = np.arange(X.shape[1])
        self.calibrator_ = self._calibrator().fit(X, np.asarray(y), p_cf=self.p_cf)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator_.transform(np.asarray(X, dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
