"""Calibrators of label probabilities, one interface: fit on labelled probability vectors,
transform to calibrated probabilities, save and load.

Every calibrator first normalises each probability vector to sum 1 (as LinC's code does).
- none: the normalised probabilities.
- contextual (Zhao et al. 2021): softmax(W p) with W = diag(p_cf)^-1, p_cf the normalised
  mean label probabilities of the content-free inputs under the same demonstrations.
- linc (Abbas et al. 2024): softmax(W p + b) with a full KxK W and b, initialised at
  contextual calibration (W = diag(p_cf)^-1, b = 0) and trained by cross-entropy with plain
  SGD, one example per step, the examples reshuffled every epoch with a seeded generator.
- temperature: softmax(log p / T), one T > 0 fitted by likelihood.
- platt: softmax(a * log p + c) with per-class a and c (vector scaling; for two classes it is
  Platt's logistic fit on the log-odds), fitted by likelihood with a small L2 pull of a
  towards 1 and c towards 0 so that five examples cannot drive it to infinity.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from federation.errors import Pv4fadError

LOG_FLOOR = 1e-12  # log p of a label word the model gives no mass to


class CalibrationError(Pv4fadError):
    """Bad input to a calibrator (shape, values, missing p_cf) or a bad calibrator file."""


def normalise(probs: np.ndarray, where: str = "probabilities") -> np.ndarray:
    """Rows scaled to sum 1; rejects non-finite or negative values and all-zero rows."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise CalibrationError(f"{where}: expected an [examples, classes >= 2] array, "
                               f"got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise CalibrationError(f"{where}: probabilities must be finite and non-negative")
    sums = p.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise CalibrationError(f"{where}: a row has no probability mass on any label")
    return p / sums


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _labels(labels: np.ndarray | None, n: int, k: int) -> np.ndarray:
    if labels is None:
        raise CalibrationError("this calibrator is fitted on labelled examples: labels missing")
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or (y >= k).any():
        raise CalibrationError(f"labels must be {n} class indices in [0, {k})")
    return y.astype(np.int64)


def _p_cf(p_cf: np.ndarray | None, k: int | None, method: str) -> np.ndarray:
    if p_cf is None:
        raise CalibrationError(f"{method} needs p_cf (content-free label probabilities)")
    cf = np.ravel(np.asarray(p_cf, dtype=np.float64))
    if k is not None and len(cf) != k:
        raise CalibrationError(f"p_cf has {len(cf)} classes, the probabilities {k}")
    cf = normalise(cf[None, :], "p_cf")[0]
    if (cf <= 0).any():
        raise CalibrationError("p_cf gives a class zero probability: diag(p_cf)^-1 is undefined")
    return cf


class Calibrator(ABC):
    """fit(probs, labels, p_cf) -> self; transform(probs) -> calibrated probabilities."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> Calibrator: ...

    @abstractmethod
    def logits(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated scores z (argmax = prediction) of raw label probabilities."""

    def transform(self, probs: np.ndarray) -> np.ndarray:
        return softmax(self.logits(probs))

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Calibrator: ...


CALIBRATORS: dict[str, type[Calibrator]] = {}


def register_calibrator(cls: type[Calibrator]) -> type[Calibrator]:
    CALIBRATORS[cls.name] = cls
    return cls


@register_calibrator
class NoCalibration(Calibrator):
    name = "none"

    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> NoCalibration:
        return self

    def logits(self, probs: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(normalise(probs), LOG_FLOOR))

    def transform(self, probs: np.ndarray) -> np.ndarray:
        return normalise(probs)

    def state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NoCalibration:
        return cls()


class AffineCalibrator(Calibrator):
    """z = W p + b on normalised probabilities p."""

    def __init__(self, W: np.ndarray | None = None, b: np.ndarray | None = None) -> None:
        self.W = None if W is None else np.asarray(W, dtype=np.float64)
        self.b = None if b is None else np.asarray(b, dtype=np.float64)

    def logits(self, probs: np.ndarray) -> np.ndarray:
        if self.W is None or self.b is None:
            raise CalibrationError(f"{self.name} calibrator is not fitted")
        p = normalise(probs)
        if p.shape[1] != len(self.b):
            raise CalibrationError(f"probabilities have {p.shape[1]} classes, the calibrator "
                                   f"{len(self.b)}")
        return p @ self.W.T + self.b

    def state(self) -> dict[str, Any]:
        return {"W": self.W.tolist() if self.W is not None else None,
                "b": self.b.tolist() if self.b is not None else None}


@register_calibrator
class ContextualCalibration(AffineCalibrator):
    name = "contextual"

    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> ContextualCalibration:
        cf = _p_cf(p_cf, None if probs is None else np.asarray(probs).shape[1], self.name)
        self.W, self.b = np.diag(1.0 / cf), np.zeros(len(cf))
        return self

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ContextualCalibration:
        return cls(state["W"], state["b"])


@register_calibrator
class LinC(AffineCalibrator):
    """Linear probe calibration; `lr` and `epochs` as in LinC's SGD (one example a step)."""

    name = "linc"

    def __init__(self, lr: float = 0.1, epochs: int = 15, seed: int = 0,
                 W: np.ndarray | None = None, b: np.ndarray | None = None) -> None:
        super().__init__(W, b)
        if lr <= 0 or epochs < 0:
            raise CalibrationError(f"linc needs lr > 0 and epochs >= 0, got {lr} and {epochs}")
        self.lr, self.epochs, self.seed = lr, epochs, seed

    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> LinC:
        """Start at contextual calibration and run `epochs` of SGD on (probs, labels)."""
        start = ContextualCalibration().fit(probs, p_cf=p_cf)
        self.W, self.b = start.W, start.b
        return self.train(probs, labels)

    def train(self, probs: np.ndarray, labels: np.ndarray | None) -> LinC:
        """`epochs` of SGD from the current W and b (a federated party's local step)."""
        p = normalise(probs)
        y = _labels(labels, len(p), p.shape[1])
        W, b = self.W.copy(), self.b.copy()
        rng = np.random.default_rng(self.seed)
        for _ in range(self.epochs):
            for i in rng.permutation(len(p)):
                z = W @ p[i] + b
                grad = np.exp(z - z.max())
                grad /= grad.sum()
                grad[y[i]] -= 1.0  # d cross-entropy / d z = softmax(z) - onehot(y)
                W -= self.lr * np.outer(grad, p[i])
                b -= self.lr * grad
        self.W, self.b = W, b
        return self

    def state(self) -> dict[str, Any]:
        return {**super().state(), "lr": self.lr, "epochs": self.epochs, "seed": self.seed}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinC:
        return cls(state["lr"], state["epochs"], state["seed"], state["W"], state["b"])


@register_calibrator
class TemperatureScaling(Calibrator):
    name = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def logits(self, probs: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(normalise(probs), LOG_FLOOR)) / self.temperature

    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> TemperatureScaling:
        logp = np.log(np.maximum(normalise(probs), LOG_FLOOR))
        y = _labels(labels, len(logp), logp.shape[1])

        def nll(log_t: float) -> float:
            z = logp / np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

        best = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded")
        self.temperature = float(np.exp(best.x))
        return self

    def state(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TemperatureScaling:
        return cls(float(state["temperature"]))


@register_calibrator
class PlattScaling(Calibrator):
    name = "platt"

    def __init__(self, a: np.ndarray | None = None, c: np.ndarray | None = None,
                 l2: float = 0.01) -> None:
        self.a = None if a is None else np.asarray(a, dtype=np.float64)
        self.c = None if c is None else np.asarray(c, dtype=np.float64)
        self.l2 = l2

    def logits(self, probs: np.ndarray) -> np.ndarray:
        if self.a is None or self.c is None:
            raise CalibrationError("platt calibrator is not fitted")
        return np.log(np.maximum(normalise(probs), LOG_FLOOR)) * self.a + self.c

    def fit(self, probs: np.ndarray | None, labels: np.ndarray | None = None,
            p_cf: np.ndarray | None = None) -> PlattScaling:
        logp = np.log(np.maximum(normalise(probs), LOG_FLOOR))
        n, k = logp.shape
        y = _labels(labels, n, k)
        onehot = np.eye(k)[y]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, c = theta[:k], theta[k:]
            q = softmax(logp * a + c)
            loss = -np.mean(np.log(np.maximum(q[np.arange(n), y], 1e-300)))
            loss += 0.5 * self.l2 * (np.sum((a - 1) ** 2) + np.sum(c**2))
            dz = (q - onehot) / n
            grad = np.concatenate([(dz * logp).sum(0) + self.l2 * (a - 1),
                                   dz.sum(0) + self.l2 * c])
            return float(loss), grad

        start = np.concatenate([np.ones(k), np.zeros(k)])
        theta = minimize(objective, start, jac=True, method="L-BFGS-B").x
        self.a, self.c = theta[:k], theta[k:]
        return self

    def state(self) -> dict[str, Any]:
        return {"a": None if self.a is None else self.a.tolist(),
                "c": None if self.c is None else self.c.tolist(), "l2": self.l2}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PlattScaling:
        return cls(state["a"], state["c"], float(state["l2"]))


def make_calibrator(method: str, **options: Any) -> Calibrator:
    if method not in CALIBRATORS:
        raise CalibrationError(f"unknown calibration method {method!r} "
                               f"(expected one of {sorted(CALIBRATORS)})")
    return CALIBRATORS[method](**options)


def save_calibrator(calibrator: Calibrator, path: str | Path,
                    classes: tuple[str, ...] = ()) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"method": calibrator.name, "classes": list(classes), "state": calibrator.state()}
    out.write_text(json.dumps(record, indent=1))
    return out


def load_calibrator(path: str | Path) -> tuple[Calibrator, tuple[str, ...]]:
    """A saved calibrator and the class names it was fitted on."""
    where = Path(path)
    if not where.is_file():
        raise CalibrationError(f"calibrator file {str(path)!r} does not exist")
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
        cls = CALIBRATORS[record["method"]]
        return cls.from_state(record["state"]), tuple(record.get("classes", ()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: not a calibrator file ({type(exc).__name__}: "
                               f"{exc})") from exc
