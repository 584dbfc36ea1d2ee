"""k-ary randomized response (the banks' reported statuses) and its accounting."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.accountant import PrivacyAccountant, Release
from crypto.dp import (
    categorical_randomized_response,
    keyed_randomized_response,
    rr_keep_probability,
)
from federation.errors import Pv4fadError


def test_categorical_rr_keeps_and_flips_at_the_stated_rates():
    eps, k, n = 1.5, 5, 200_000
    values = np.zeros(n, dtype=np.int8)
    out = categorical_randomized_response(values, k, eps)
    counts = np.bincount(out, minlength=k) / n
    keep = rr_keep_probability(eps, k)
    assert counts[0] == pytest.approx(keep, abs=0.005)
    assert np.allclose(counts[1:], (1 - keep) / (k - 1), atol=0.004)
    assert out.dtype == np.int8


def test_categorical_rr_rejects_out_of_range_values():
    with pytest.raises(Pv4fadError, match=r"\[0, 3\)"):
        categorical_randomized_response(np.array([0, 3]), 3, 1.0)


def test_accountant_gives_pure_epsilon_for_one_kary_release():
    acc = PrivacyAccountant()
    acc.record(Release(mechanism="randomized_response", sensitivity=1.0, noise_scale=2.0,
                       releasing_party="bank01", released="status", buckets=5))
    # The RDP route to (eps, delta) for a pure eps-DP mechanism lands within 1 % of eps.
    assert acc.epsilon(1e-6) == pytest.approx(2.0, rel=0.01)
    acc.record(Release(mechanism="randomized_response", sensitivity=1.0, noise_scale=2.0,
                       releasing_party="bank01", released="status", buckets=5, count=3))
    assert 2.0 < acc.epsilon(1e-6) <= 4 * 2.0 * 1.01


def test_keyed_rr_answers_a_question_the_same_way_every_time():
    eps, k, n = 1.0, 2, 100_000
    key = bytes(range(32))
    values = np.zeros(n, dtype=np.int64)
    draw_keys = [i.to_bytes(8, "little") for i in range(n)]
    first = keyed_randomized_response(values, draw_keys, k, eps, key)
    assert np.array_equal(first, keyed_randomized_response(values, draw_keys, k, eps, key))
    # Across questions the law is k-ary randomized response at eps.
    assert (first == 0).mean() == pytest.approx(rr_keep_probability(eps, k), abs=0.006)
    # Another secret key, or another question, is an independent draw.
    other = keyed_randomized_response(values, draw_keys, k, eps, bytes(32))
    assert (first != other).mean() == pytest.approx(2 * 0.731 * 0.269, abs=0.01)
    five = keyed_randomized_response(np.zeros(n, np.int64), draw_keys, 5, 1.5, key)
    assert np.allclose(np.bincount(five, minlength=5)[1:] / n,
                       (1 - rr_keep_probability(1.5, 5)) / 4, atol=0.004)


def test_keyed_rr_rejects_bad_arguments():
    with pytest.raises(Pv4fadError, match="draw key per value"):
        keyed_randomized_response(np.zeros(3, np.int64), [b"a"], 2, 1.0, bytes(32))
    with pytest.raises(Pv4fadError, match="32-byte"):
        keyed_randomized_response(np.zeros(1, np.int64), [b"a"], 2, 1.0, bytes(16))
    with pytest.raises(Pv4fadError, match="epsilon"):
        keyed_randomized_response(np.zeros(1, np.int64), [b"a"], 2, 0.0, bytes(32))
