"""Metrics: ECE and reliability bins on hand-computed cases, macro-F1 against
scikit-learn, entropy in bits, accuracy spread."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from llm_modules.calibration.metrics import (
    accuracy,
    entropy_bits,
    entropy_histogram,
    expected_calibration_error,
    macro_f1,
    reliability,
    report,
    spread,
)


def test_ece_and_reliability_on_a_hand_computed_case():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 1, 1])
    bins = reliability(probs, labels)
    # Bins are (lo, hi]: (0.5, 0.6] holds 0.55 (right) and 0.6 (wrong), (0.6, 0.7] holds
    # 0.7 (right), (0.9, 1.0] holds 0.95 twice (one right, one wrong).
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 2, 1, 0, 0, 2]
    assert bins[5]["confidence"] == pytest.approx(0.575) and bins[5]["accuracy"] == 0.5
    assert bins[6]["confidence"] == pytest.approx(0.7) and bins[6]["accuracy"] == 1.0
    assert bins[0]["confidence"] is None
    expected = (2 / 5) * abs(0.5 - 0.575) + (1 / 5) * abs(1 - 0.7) + (2 / 5) * abs(0.5 - 0.95)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_perfectly_calibrated_predictions_have_zero_ece():
    probs = np.tile([[0.75, 0.25]], (8, 1))
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_macro_f1_matches_scikit_learn_and_accuracy_counts_hits():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    labels = rng.integers(0, 3, size=200)
    assert macro_f1(probs, labels) == pytest.approx(
        f1_score(labels, probs.argmax(1), average="macro"))
    assert accuracy(probs, labels) == pytest.approx(np.mean(probs.argmax(1) == labels))


def test_entropy_is_in_bits_and_its_histogram_covers_zero_to_log2_k():
    probs = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(entropy_bits(probs), [0.0, 2.0, 1.0], atol=1e-12)
    hist = entropy_histogram(probs, bins=4)
    assert hist["edges"][0] == 0.0 and hist["edges"][-1] == 2.0
    assert hist["counts"] == [1, 0, 1, 1]
    assert report(probs, np.array([0, 1, 0]))["mean_entropy_bits"] == pytest.approx(1.0)


def test_spread_of_accuracy():
    assert spread([0.5, 0.7, 0.6]) == pytest.approx({"std": np.std([0.5, 0.7, 0.6]),
                                                     "range": 0.2, "mean": 0.6})
