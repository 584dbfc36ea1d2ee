"""Slice learners: train a model one SISA slice at a time, deterministically.

A learner's state (the checkpoint) is a picklable object. `train_slice` continues from a
state on the cumulative data of slices 1..r and returns the new state and the number of
samples it processed (the unit of the SISA retraining cost). Every random choice is drawn
from `seed`, so retraining from a checkpoint reproduces training from scratch exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    """Any scikit-learn binary classifier. An iterative one with `partial_fit` (it has a
    `max_iter`: SGD, MLP) continues training for `epochs` passes over the cumulative slices
    in a seeded order. One whose `partial_fit` accumulates statistics (naive Bayes: no
    `max_iter`) is fed each slice's own rows once: re-feeding earlier slices would count
    them again. Without `partial_fit`, each slice refits on the cumulative data (the
    checkpoint is the refitted model, so slicing saves nothing for these learners: a forget
    costs one refit per later slice)."""

    def __init__(self, make_estimator: Callable[[int], ClassifierMixin], epochs: int = 5) -> None:
        self.make_estimator = make_estimator
        self.epochs = epochs
        probe = make_estimator(0)
        self.accumulates = hasattr(probe, "partial_fit") and "max_iter" not in probe.get_params()
        # What ShardStore feeds train_slice: slices 1..r, or slice r alone.
        self.cumulative = not self.accumulates

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
        if self.accumulates:
            model.partial_fit(features, labels, classes=np.array([0, 1]))
            return model, len(labels)
        for epoch in range(self.epochs):
            order = np.random.default_rng([*seed, epoch]).permutation(len(labels))
            model.partial_fit(features[order], labels[order], classes=np.array([0, 1]))
        return model, self.epochs * len(labels)

    def predict_proba(self, state: ClassifierMixin, features: np.ndarray) -> np.ndarray:
        if not hasattr(state, "classes_"):
            raise Pv4fadError("a SISA shard was asked to predict before it holds any data")
        with one_blas_thread():
            if _plain_logistic(state, features):
                return _logistic_proba(state, features)
            proba = state.predict_proba(features)
        positive = list(state.classes_).index(1) if 1 in state.classes_ else None
        if positive is None:  # a refitted model that only ever saw negatives
            return np.zeros(len(features))
        return proba[:, positive]


_BLAS: list[Any] = []


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context in which BLAS runs on one thread. Scoring query rows is a matrix-vector
    product of a millisecond's work or less: extra BLAS threads only add synchronisation,
    which on a host busy with other work costs tens of milliseconds (measured: 19 ms
    against 0.1 ms for 12,000 x 50 rows on a loaded 2-core machine). Each row's result is
    computed by one thread either way. The BLAS libraries are looked up once per process
    (threadpoolctl inspects the loaded libraries, ~40 ms); switching costs microseconds."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController().select(user_api="blas").lib_controllers)
    libraries = _BLAS[0]
    before = [lib.num_threads for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(libraries, before, strict=True):
            lib.set_num_threads(threads)


def _plain_logistic(state: ClassifierMixin, features: np.ndarray) -> bool:
    """An SGD logistic model over 0/1 labels, asked about a float matrix of its width."""
    return (
        isinstance(state, SGDClassifier) and state.loss == "log_loss"
        and list(state.classes_) == [0, 1] and isinstance(features, np.ndarray)
        and features.dtype == np.float64 and features.ndim == 2
        and features.shape[1] == state.coef_.shape[1]
    )


def _logistic_proba(state: SGDClassifier, features: np.ndarray) -> np.ndarray:
    """P(y = 1) as scikit-learn computes it (the same product, intercept and expit, so the
    same bits), without re-validating the model and the rows on every query."""
    from scipy.special import expit

    # In place: one array of scores, not three (same operations, same bits).
    scores = (features @ state.coef_.T).reshape(-1)
    scores += state.intercept_
    return expit(scores, out=scores)


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


def full_retrain_samples(name: str, epochs: int, rows: int) -> int:
    """Samples one unsharded, unsliced model of this learner processes when trained from
    scratch on `rows` rows: the baseline a forget is compared with."""
    if name in TRANSFORMER_LEARNERS:
        return epochs * rows
    learner = make_learner(name, epochs)
    passes = 1 if getattr(learner, "accumulates", False) else epochs
    if not hasattr(learner.initial_state([0]), "partial_fit"):
        passes = 1  # a refit sees each row once (its own iterations are not counted)
    return passes * rows
