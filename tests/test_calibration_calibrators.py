"""Calibrators: contextual calibration is LinC at zero epochs, LinC's SGD equals an
independent plain-torch implementation, the baselines fit what they should, save/load and
the scikit-learn wrapper round-trip, and bad input is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llm_modules.calibration.calibrators import (
    CalibrationError,
    ContextualCalibration,
    LinC,
    load_calibrator,
    make_calibrator,
    save_calibrator,
)
from llm_modules.calibration.estimator import CalibratedICLClassifier


def _biased_probs(n: int, seed: int, k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label probabilities of a model biased towards the last class, their labels, p_cf."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[labels] + np.linspace(0, 1.5, k)
    raw = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    raw *= rng.uniform(0.3, 0.9, size=(n, 1))  # unnormalised, as label words are
    p_cf = np.exp(np.linspace(0, 1.5, k))
    return raw, labels, p_cf * 0.5


def _reference_linc(probs, labels, p_cf, lr, epochs, seed):
    """LinC written independently with torch autograd, nn-style loss and torch.optim.SGD."""
    p = torch.tensor(probs, dtype=torch.float64)
    p = p / p.sum(dim=1, keepdim=True)
    cf = torch.tensor(p_cf, dtype=torch.float64)
    cf = cf / cf.sum()
    W = torch.linalg.inv(torch.diag(cf)).requires_grad_(True)
    b = torch.zeros(len(cf), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([W, b], lr=lr)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in order.permutation(len(p)):
            optimizer.zero_grad()
            z = (W @ p[i] + b).unsqueeze(0)
            F.cross_entropy(z, torch.tensor([int(labels[i])])).backward()
            optimizer.step()
    return W.detach().numpy(), b.detach().numpy()


def test_zero_epochs_from_the_paper_initialisation_is_contextual_calibration():
    val, y, p_cf = _biased_probs(10, seed=1)
    test, _, _ = _biased_probs(200, seed=2)
    linc = LinC(lr=0.5, epochs=0).fit(val, y, p_cf=p_cf)
    contextual = ContextualCalibration().fit(test, p_cf=p_cf)
    cf = p_cf / p_cf.sum()
    assert np.array_equal(linc.W, np.diag(1.0 / cf)) and np.array_equal(linc.b, np.zeros(3))
    assert np.array_equal(linc.transform(test), contextual.transform(test))
    # And contextual calibration is softmax(p / p_cf) on normalised p, written out here.
    p = test / test.sum(axis=1, keepdims=True)
    z = p / cf
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(contextual.transform(test), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("lr", "epochs", "n", "seed"), [(0.1, 15, 5, 0), (0.5, 30, 10, 3),
                                                          (0.01, 100, 50, 7)])
def test_linc_equals_a_plain_torch_reference(lr, epochs, n, seed):
    val, y, p_cf = _biased_probs(n, seed=seed + 10)
    linc = LinC(lr=lr, epochs=epochs, seed=seed).fit(val, y, p_cf=p_cf)
    W, b = _reference_linc(val, y, p_cf, lr, epochs, seed)
    assert np.abs(linc.W - W).max() < 1e-6 and np.abs(linc.b - b).max() < 1e-6
    start = np.diag(p_cf.sum() / p_cf)
    assert np.abs(linc.W - start).max() > 1e-2  # training moved it: the check is not vacuous


def test_linc_fixes_a_label_bias_that_contextual_calibration_misjudges():
    val, y, _ = _biased_probs(60, seed=4)
    test, y_test, _ = _biased_probs(600, seed=5)
    wrong_cf = np.array([0.6, 0.3, 0.1])  # a content-free estimate biased the other way
    accuracy = {
        name: float(np.mean(c.transform(test).argmax(1) == y_test))
        for name, c in {
            "none": make_calibrator("none").fit(val),
            "contextual": ContextualCalibration().fit(val, p_cf=wrong_cf),
            "linc": LinC(lr=0.5, epochs=30).fit(val, y, p_cf=wrong_cf),
        }.items()
    }
    assert accuracy["linc"] > accuracy["contextual"] + 0.05
    assert accuracy["linc"] > accuracy["none"]


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 3))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in true])
    sharpened = np.exp(logits * 2.0)  # overconfident by a factor of 2
    fitted = make_calibrator("temperature").fit(sharpened, labels)
    assert fitted.temperature == pytest.approx(2.0, rel=0.1)
    assert np.array_equal(fitted.transform(sharpened).argmax(1), sharpened.argmax(1))


def test_platt_moves_a_biased_decision_and_stays_finite_on_five_examples():
    val, y, _ = _biased_probs(400, seed=6)
    test, y_test, _ = _biased_probs(600, seed=7)
    platt = make_calibrator("platt").fit(val, y)
    none = make_calibrator("none").fit(val)
    assert np.mean(platt.transform(test).argmax(1) == y_test) > np.mean(
        none.transform(test).argmax(1) == y_test)
    tiny = make_calibrator("platt").fit(val[:5], y[:5])
    assert np.isfinite(tiny.a).all() and np.abs(tiny.a).max() < 1e3


@pytest.mark.parametrize("method", ["none", "contextual", "linc", "temperature", "platt"])
def test_save_and_load_give_the_same_predictions(tmp_path, method):
    val, y, p_cf = _biased_probs(20, seed=8)
    test, _, _ = _biased_probs(50, seed=9)
    fitted = make_calibrator(method).fit(val, y, p_cf=p_cf)
    path = save_calibrator(fitted, tmp_path / f"{method}.json", ("a", "b", "c"))
    loaded, classes = load_calibrator(path)
    assert classes == ("a", "b", "c") and loaded.name == method
    assert np.array_equal(loaded.transform(test), fitted.transform(test))


def test_sklearn_wrapper_clones_cross_validates_and_matches_linc():
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    val, y, p_cf = _biased_probs(60, seed=11)
    model = CalibratedICLClassifier("linc", p_cf=p_cf, lr=0.2, epochs=10, seed=2)
    twin = clone(model)
    assert twin.get_params()["lr"] == 0.2
    twin.fit(val, y)
    direct = LinC(lr=0.2, epochs=10, seed=2).fit(val, y, p_cf=p_cf)
    assert np.array_equal(twin.predict_proba(val), direct.transform(val))
    scores = cross_val_score(model, val, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: LinC().fit(np.ones((4, 3)), np.zeros(4, int)), "needs p_cf"),
    (lambda: LinC().fit(np.ones((4, 3)), np.zeros(4, int), p_cf=[1, 1]), "p_cf has 2 classes"),
    (lambda: LinC().fit(np.ones((4, 3)), np.array([0, 1, 2, 3]), p_cf=[1, 1, 1]), "class indices"),
    (lambda: LinC().fit(np.ones((4, 3)), None, p_cf=[1, 1, 1]), "labels missing"),
    (lambda: make_calibrator("none").fit(None).transform(np.array([[0.0, 0.0]])), "no probability"),
    (lambda: make_calibrator("none").transform(np.array([[np.nan, 1.0]])), "finite"),
    (lambda: ContextualCalibration().fit(None, p_cf=[0.0, 1.0]), "zero probability"),
    (lambda: make_calibrator("isotonic"), "unknown calibration method"),
    (lambda: LinC(lr=-1.0), "lr > 0"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(CalibrationError, match=message):
        call()


def test_a_broken_calibrator_file_names_itself(tmp_path):
    bad = tmp_path / "cal.json"
    bad.write_text('{"method": "linc"}')
    with pytest.raises(CalibrationError, match="not a calibrator file"):
        load_calibrator(bad)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibrator(tmp_path / "missing.json")
