"""DP noise distributions (KS tests), distributed shares, and the accountant vs dp-accounting."""

from __future__ import annotations

import hashlib
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib
from scipy import stats

from crypto.accountant import (
    PrivacyAccountant,
    Release,
    calibrate_gaussian_sigma,
    calibrate_skellam_variance,
    skellam_rdp,
)
from crypto.csprng import SecureRandom
from crypto.dp import (
    gaussian_noise,
    gaussian_share,
    randomized_response,
    rr_noise_parameter,
    skellam_noise,
    skellam_share,
)
from federation.errors import Pv4fadError
from federation.transcript import TranscriptLedger

N = 20000
ALPHA = 1e-3  # p-value floor of the goodness-of-fit tests


def _rng(name: str) -> SecureRandom:
    """A seeded stream, so each goodness-of-fit test is deterministic: a correct sampler
    passes on every run instead of failing one run in 1/ALPHA."""
    return SecureRandom(hashlib.sha256(name.encode()).digest())


def test_csprng_uniform_and_seeded_reproducible() -> None:
    assert stats.kstest(_rng("uniform").uniform(N), "uniform").pvalue > ALPHA
    seed = bytes(range(32))
    assert np.array_equal(SecureRandom(seed).uint64(5), SecureRandom(seed).uint64(5))
    assert not np.array_equal(SecureRandom().uint64(5), SecureRandom().uint64(5))


def test_gaussian_ks() -> None:
    draws = gaussian_noise(N, 3.0, _rng("gaussian"))
    assert stats.kstest(draws, "norm", args=(0, 3.0)).pvalue > ALPHA


def test_gaussian_shares_sum_to_target() -> None:
    n_parties, sigma = 9, 2.5
    rng = _rng("gaussian shares")
    total = sum(gaussian_share(N, sigma, n_parties, rng) for _ in range(n_parties))
    assert stats.kstest(total, "norm", args=(0, sigma)).pvalue > ALPHA


def _skellam_cdf(variance: float):
    return lambda x: stats.skellam.cdf(x, variance / 2, variance / 2)


def test_skellam_matches_law_and_shares_sum_to_target() -> None:
    variance, n_parties = 40.0, 4
    support = np.arange(-30, 31)
    cdf = _skellam_cdf(variance)(support)
    probs = np.diff(np.concatenate([[0.0], cdf]))
    probs = np.append(probs, 1 - probs.sum())  # last bin: everything above 30 (and below -30)

    def smooth_cdf(x: np.ndarray) -> np.ndarray:
        # Law of draw + U(-1/2, 1/2): linear between the integer CDF values at k + 1/2.
        return np.interp(x, support + 0.5, cdf)

    rng = _rng("skellam")
    single = skellam_noise(N, variance, rng)
    assert single.dtype == np.int64
    total = sum(skellam_share(N, variance, n_parties, rng) for _ in range(n_parties))
    expected = probs * N
    # Chi-square needs expected counts of about 5 or more: pool the thin tails into one bin.
    thin = expected < 5
    for draws in (single, total):
        inside = np.clip(draws, -30, 31) + 30
        observed = np.bincount(np.where(draws < -30, 61, inside), minlength=62)
        pooled_obs = np.append(observed[~thin], observed[thin].sum())
        pooled_exp = np.append(expected[~thin], expected[thin].sum())
        assert stats.chisquare(pooled_obs, pooled_exp).pvalue > ALPHA
        jitter = rng.uniform(N) - 0.5
        assert stats.kstest(draws + jitter, smooth_cdf).pvalue > ALPHA
    shifted = skellam_noise(N, variance, rng) + 2 + rng.uniform(N) - 0.5
    assert stats.kstest(shifted, smooth_cdf).pvalue < ALPHA


def test_poisson_sampler_ks_large_rate() -> None:
    draws = _rng("poisson large").poisson(N, 5000.0)
    assert stats.kstest(draws, stats.norm(5000, math.sqrt(5000)).cdf).pvalue > ALPHA


def test_poisson_sampler_small_rate_chi_square() -> None:
    lam = 0.7
    draws = _rng("poisson small").poisson(N, lam)
    probs = stats.poisson.pmf(np.arange(5), lam)
    probs = np.append(probs, 1 - probs.sum())
    observed = np.bincount(np.minimum(draws, 5), minlength=6)
    assert stats.chisquare(observed[:5], probs[:5] * N, sum_check=False).pvalue > ALPHA


def test_randomized_response_flip_rate() -> None:
    eps = 1.0
    bits = np.zeros(N, dtype=bool)
    flipped = randomized_response(bits, eps, _rng("randomized response")).mean()
    expected = 1 / (1 + math.e**eps)
    assert stats.binomtest(int(flipped * N), N, expected).pvalue > ALPHA


def test_noise_argument_errors() -> None:
    with pytest.raises(Pv4fadError, match="sigma"):
        gaussian_noise(3, 0.0)
    with pytest.raises(Pv4fadError, match="variance"):
        skellam_noise(3, -1.0)
    with pytest.raises(Pv4fadError, match="n_parties"):
        gaussian_share(3, 1.0, 0)
    with pytest.raises(Pv4fadError, match="bool array"):
        randomized_response(np.zeros(3), 1.0)


def test_accountant_equals_dp_accounting_and_writes_ledger() -> None:
    ledger = TranscriptLedger("bank01", "run-1")
    acc = PrivacyAccountant(ledger)
    acc.record(Release("gaussian", 2.0, 5.0, "bank01", "joint counts", count=3))
    acc.record(Release("randomized_response", 1.0, 0.8, "bank01", "label bit",
                       data_subject="acct-7", count=2))
    acc.record(Release("gaussian", 1.0, 4.0, "bank01", "row score", data_subject="acct-7"))
    acc.record(Release("gaussian", 1.0, 4.0, "bank01", "row score", data_subject="acct-9"))
    replace_one = dp_accounting.NeighboringRelation.REPLACE_ONE
    reference = rdp_lib.RdpAccountant(neighboring_relation=replace_one)
    reference.compose(dp_accounting.GaussianDpEvent(2.5), 3)
    whole = rdp_lib.RdpAccountant(neighboring_relation=replace_one)
    whole.compose(dp_accounting.GaussianDpEvent(2.5), 3)
    reference.compose(dp_accounting.RandomizedResponseDpEvent(rr_noise_parameter(0.8), 2), 2)
    reference.compose(dp_accounting.GaussianDpEvent(4.0))
    for delta in (1e-5, 1e-8):
        assert acc.epsilon(delta, "acct-7") == pytest.approx(reference.get_epsilon(delta), 1e-12)
    whole.compose(dp_accounting.RandomizedResponseDpEvent(rr_noise_parameter(0.8), 2), 2)
    whole.compose(dp_accounting.GaussianDpEvent(4.0), 2)
    assert acc.epsilon(1e-5) == pytest.approx(whole.get_epsilon(1e-5), 1e-12)
    assert acc.max_subject_epsilon(1e-5) == acc.epsilon(1e-5, "acct-7")
    assert acc.epsilon(1e-5, "acct-9") < acc.epsilon(1e-5, "acct-7")
    releases = [e for e in ledger.entries if e.direction == "release"]
    assert [e.details["released"] for e in releases] == [
        "joint counts", "label bit", "row score", "row score"]
    assert releases[1].details["data_subject"] == "acct-7"


def test_skellam_accounting_formula_and_gaussian_limit() -> None:
    orders = np.array([2.0, 3.0, 1.5])
    curve = skellam_rdp(orders, 10.0, 1.0, 1.0)
    assert curve[0] == pytest.approx(2 / 20 + min((3 + 6) / 400, 3 / 20))
    assert math.isinf(curve[2])
    acc = PrivacyAccountant()
    acc.record(Release("skellam", 1.0, 1e6, "bank01", "counts"))
    gauss = PrivacyAccountant()
    gauss.record(Release("gaussian", 1.0, 1e3, "bank01", "counts"))
    # For large variance the Skellam mechanism costs what the Gaussian of equal variance does.
    assert acc.epsilon(1e-5) == pytest.approx(gauss.epsilon(1e-5), rel=0.02)


def test_calibration_hits_target() -> None:
    sigma = calibrate_gaussian_sigma(1.0, 1e-5, sensitivity=2.0, compositions=10)
    acc = PrivacyAccountant()
    acc.record(Release("gaussian", 2.0, sigma, "pns", "x", count=10))
    assert acc.epsilon(1e-5) == pytest.approx(1.0, abs=1e-3)
    variance = calibrate_skellam_variance(1.0, 1e-5, compositions=10)
    acc = PrivacyAccountant()
    acc.record(Release("skellam", 1.0, variance, "pns", "x", count=10))
    assert acc.epsilon(1e-5) == pytest.approx(1.0, abs=1e-3)


def test_accountant_errors() -> None:
    acc = PrivacyAccountant()
    with pytest.raises(Pv4fadError, match="unknown mechanism 'laplace'"):
        acc.record(Release("laplace", 1.0, 1.0, "pns", "x"))
    with pytest.raises(Pv4fadError, match="noise_scale of 'x'"):
        acc.record(Release("gaussian", 1.0, 0.0, "pns", "x"))
    with pytest.raises(Pv4fadError, match="delta"):
        acc.epsilon(0.0)
    assert acc.epsilon(1e-5) == 0.0


def _run_cli(argv: list[str]) -> int:
    """Parse with this package's commands only (the full CLI imports every module)."""
    import argparse

    from crypto.cli import register

    parser = argparse.ArgumentParser(prog="pv4fad")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_cli_calibrate_and_params(capsys) -> None:
    import json

    assert _run_cli(["crypto", "calibrate", "--epsilon", "1", "--delta", "1e-5",
                     "--compositions", "10", "--parties", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stddev"] == pytest.approx(calibrate_gaussian_sigma(1.0, 1e-5, 1.0, 10))
    assert out["variance_per_party"] == pytest.approx(out["variance"] / 4)
    assert _run_cli(["crypto", "params", "--json"]) == 0
    params = json.loads(capsys.readouterr().out)
    assert params["coeff_modulus_bits"] <= params["max_bits_128_bit_ternary"]
    with pytest.raises(Pv4fadError, match="epsilon > 0"):
        _run_cli(["crypto", "calibrate", "--epsilon", "-1", "--json"])
