"""Slice learners: train a model one SISA slice at a time, deterministically.

A learner's state (the checkpoint) is a picklable object. `train_slice` continues from a
state on the cumulative data of slices 1..r and returns the new state and the number of
samples it processed (the unit of the SISA retraining cost). Every random choice is drawn
from `seed`, so retraining from a checkpoint reproduces training from scratch exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier

from federation.errors import Pv4fadError

Seed = Sequence[int]
SKLEARN_LEARNERS = ("sgd", "mlp", "logreg", "forest")
TRANSFORMER_LEARNERS = ("tiny-bert", "minilm")
LEARNERS = SKLEARN_LEARNERS + TRANSFORMER_LEARNERS
SKLEARN_PREFIX = "sklearn:"


class SliceLearner(Protocol):
    """What a SISA shard needs from a model."""

    def initial_state(self, seed: Seed) -> Any: ...

    def train_slice(
        self, state: Any, features: np.ndarray, labels: np.ndarray, seed: Seed
    ) -> tuple[Any, int]: ...

    def predict_proba(self, state: Any, features: np.ndarray) -> np.ndarray: ...


def int_seed(seed: Seed) -> int:
    """A 31-bit integer seed for libraries that want one (scikit-learn's random_state)."""
    return int(np.random.SeedSequence(list(seed)).generate_state(1)[0] >> 1)


class SklearnLearner:
    """Any scikit-learn binary classifier. With `partial_fit` it continues training for
    `epochs` passes over the cumulative slices in a seeded order; without it, each slice
    refits on the cumulative data (the checkpoint is then the refitted model)."""

    def __init__(self, make_estimator: Callable[[int], ClassifierMixin], epochs: int = 5) -> None:
        self.make_estimator = make_estimator
        self.epochs = epochs

    def initial_state(self, seed: Seed) -> ClassifierMixin:
        return self.make_estimator(int_seed(seed))

    def train_slice(
        self, state: ClassifierMixin, features: np.ndarray, labels: np.ndarray, seed: Seed
    ) -> tuple[ClassifierMixin, int]:
        if len(labels) == 0:
            return state, 0
        if not hasattr(state, "partial_fit"):
            model = clone(state)
            model.fit(features, labels)
            return model, len(labels)
        model = copy.deepcopy(state)
        for epoch in range(self.epochs):
            order = np.random.default_rng([*seed, epoch]).permutation(len(labels))
            model.partial_fit(features[order], labels[order], classes=np.array([0, 1]))
        return model, self.epochs * len(labels)

    def predict_proba(self, state: ClassifierMixin, features: np.ndarray) -> np.ndarray:
        if not hasattr(state, "classes_"):
            raise Pv4fadError("a SISA shard was asked to predict before it holds any data")
        proba = state.predict_proba(features)
        positive = list(state.classes_).index(1) if 1 in state.classes_ else None
        if positive is None:  # a refitted model that only ever saw negatives
            return np.zeros(len(features))
        return proba[:, positive]


def estimator_class(name: str) -> type[ClassifierMixin]:
    """The scikit-learn-style classifier class named `sklearn:<module>.<Class>`."""
    import importlib
    import inspect

    module, _, cls = name.removeprefix(SKLEARN_PREFIX).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), cls) if module else None
    except (ImportError, AttributeError):
        found = None
    if not (inspect.isclass(found) and hasattr(found, "fit") and hasattr(found, "predict_proba")):
        raise Pv4fadError(
            f"SISA learner {name!r}: expected sklearn:<module>.<Class> naming a classifier with "
            "fit and predict_proba, e.g. sklearn:sklearn.naive_bayes.GaussianNB"
        )
    return found


def check_learner(name: str) -> None:
    """Raise a one-line error unless `name` names a learner the hosts can build."""
    if name.startswith(SKLEARN_PREFIX):
        estimator_class(name)
    elif name not in LEARNERS:
        raise _unknown_learner(name)


def _unknown_learner(name: str) -> Pv4fadError:
    return Pv4fadError(
        f"unknown SISA learner {name!r}: expected one of {', '.join(LEARNERS)} "
        "or sklearn:<module>.<Class>"
    )


def make_learner(name: str, epochs: int = 5) -> SliceLearner:
    """The learner called `name`: one of LEARNERS, or `sklearn:<module>.<Class>` for any
    scikit-learn classifier with default parameters (seeded when it takes random_state).
    Hosts build learners from names, so the same name works in every process."""
    if name.startswith(SKLEARN_PREFIX):
        cls = estimator_class(name)
        seeded = "random_state" in cls().get_params()
        return SklearnLearner(lambda rs: cls(random_state=rs) if seeded else cls(), epochs)
    factories: dict[str, Callable[[int], ClassifierMixin]] = {
        "sgd": lambda rs: SGDClassifier(
            loss="log_loss", alpha=1e-3, average=True, random_state=rs
        ),
        "mlp": lambda rs: MLPClassifier(
            hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=rs
        ),
        "logreg": lambda rs: LogisticRegression(max_iter=1000),
        "forest": lambda rs: RandomForestClassifier(
            n_estimators=50, min_samples_leaf=3, random_state=rs
        ),
    }
    if name in factories:
        return SklearnLearner(factories[name], epochs)
    if name in TRANSFORMER_LEARNERS:
        from federation.sisa.transformer import TransformerLearner

        return TransformerLearner(name, epochs=epochs)
    raise _unknown_learner(name)
