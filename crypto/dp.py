"""Differential-privacy noise: Gaussian, Skellam (integer) and randomized response.

All randomness comes from `crypto.csprng.SecureRandom`. The distributed variants give each
of n parties a share whose sum over the parties has exactly the target distribution:
N(0, sigma^2/n) for the Gaussian, Skellam with variance/n for the Skellam (Skellam is closed
under addition, which is why it suits integer secure aggregation). Every DP release must
also be recorded with `crypto.accountant.PrivacyAccountant`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from crypto.csprng import SecureRandom
from federation.errors import Pv4fadError
from federation.transcript import PayloadClass

PAYLOAD_CLASS = PayloadClass.DP_NOISED  # the class of anything released with this noise


def _count(shape: int | tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return shape, int(np.prod(shape, dtype=np.int64))


def _positive(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise Pv4fadError(f"DP noise: {name} must be a positive finite number, got {value}")


def gaussian_noise(
    shape: int | tuple[int, ...], sigma: float, rng: SecureRandom | None = None
) -> np.ndarray:
    """Draws from N(0, sigma^2), float64."""
    _positive(sigma, "sigma")
    shape, n = _count(shape)
    return (rng or SecureRandom()).normal(n, sigma).reshape(shape)


def gaussian_share(
    shape: int | tuple[int, ...], sigma: float, n_parties: int, rng: SecureRandom | None = None
) -> np.ndarray:
    """One party's share of distributed Gaussian noise: N(0, sigma^2 / n_parties)."""
    if n_parties < 1:
        raise Pv4fadError(f"DP noise: n_parties must be >= 1, got {n_parties}")
    return gaussian_noise(shape, sigma / math.sqrt(n_parties), rng)


def skellam_noise(
    shape: int | tuple[int, ...], variance: float, rng: SecureRandom | None = None
) -> np.ndarray:
    """Symmetric Skellam with the given variance: Poisson(v/2) - Poisson(v/2), int64."""
    _positive(variance, "variance")
    shape, n = _count(shape)
    rng = rng or SecureRandom()
    return (rng.poisson(n, variance / 2) - rng.poisson(n, variance / 2)).reshape(shape)


def skellam_share(
    shape: int | tuple[int, ...], variance: float, n_parties: int, rng: SecureRandom | None = None
) -> np.ndarray:
    """One party's share of distributed Skellam noise: Skellam with variance / n_parties."""
    if n_parties < 1:
        raise Pv4fadError(f"DP noise: n_parties must be >= 1, got {n_parties}")
    return skellam_noise(shape, variance / n_parties, rng)


def randomized_response(
    bits: np.ndarray, epsilon: float, rng: SecureRandom | None = None
) -> np.ndarray:
    """Binary randomized response: keep each bit with probability e^eps / (1 + e^eps)."""
    _positive(epsilon, "epsilon")
    bits = np.asarray(bits)
    if bits.dtype != np.bool_:
        raise Pv4fadError(f"randomized_response: bits must be a bool array, got {bits.dtype}")
    keep = 1.0 / (1.0 + math.exp(-epsilon))
    flip = (rng or SecureRandom()).uniform(bits.size).reshape(bits.shape) >= keep
    return bits ^ flip


def categorical_randomized_response(
    values: np.ndarray, n_categories: int, epsilon: float, rng: SecureRandom | None = None
) -> np.ndarray:
    """k-ary randomized response: keep each value with probability e^eps / (e^eps + k - 1),
    else report one of the other k - 1 categories uniformly (epsilon-DP per value)."""
    _positive(epsilon, "epsilon")
    values = np.asarray(values)
    if n_categories < 2 or values.size and (values.min() < 0 or values.max() >= n_categories):
        raise Pv4fadError(f"randomized_response: values must lie in [0, {n_categories})")
    rng = rng or SecureRandom()
    keep = rr_keep_probability(epsilon, n_categories)
    flip = rng.uniform(values.size).reshape(values.shape) >= keep
    # A uniform draw among the other k - 1 categories: shift by 1 .. k - 1 modulo k.
    shift = 1 + np.minimum((rng.uniform(values.size) * (n_categories - 1)).astype(np.int64),
                           n_categories - 2).reshape(values.shape)
    return np.where(flip, (values + shift) % n_categories, values).astype(values.dtype)


def keyed_randomized_response(
    values: np.ndarray, draw_keys: Sequence[bytes], n_categories: int, epsilon: float,
    prf_key: bytes,
) -> np.ndarray:
    """k-ary randomized response whose randomness for each value is a PRF of its key.

    The same (prf_key, draw key) always gives the same answer, so a party that keys each
    draw by what was asked (and the true value) answers a repeated question identically,
    however often it is asked: the privacy loss does not grow with repetitions. The PRF is
    keyed BLAKE2b under a 256-bit secret; its 128-bit output gives two 53-bit uniforms
    (keep or not; which other category).
    """
    _positive(epsilon, "epsilon")
    values = np.asarray(values)
    if len(draw_keys) != values.size or len(prf_key) != 32:
        raise Pv4fadError("randomized_response: one draw key per value and a 32-byte PRF key")
    if n_categories < 2 or values.size and (values.min() < 0 or values.max() >= n_categories):
        raise Pv4fadError(f"randomized_response: values must lie in [0, {n_categories})")
    words = np.frombuffer(b"".join(
        hashlib.blake2b(bytes(k), key=prf_key, digest_size=16, person=b"pv4fad-rr").digest()
        for k in draw_keys), dtype=np.uint64).reshape(-1, 2)
    uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)
    flip = uniforms[:, 0] >= rr_keep_probability(epsilon, n_categories)
    shift = 1 + np.minimum((uniforms[:, 1] * (n_categories - 1)).astype(np.int64),
                           n_categories - 2)
    return np.where(flip, (values + shift) % n_categories, values).astype(values.dtype)


def rr_keep_probability(epsilon: float, n_categories: int) -> float:
    """Probability that k-ary randomized response reports the true category."""
    return math.exp(epsilon) / (math.exp(epsilon) + n_categories - 1)


def rr_noise_parameter(epsilon: float) -> float:
    """dp-accounting's `noise_parameter` p for binary RR at `epsilon` (p = 2 / (1 + e^eps))."""
    return 2.0 / (1.0 + math.exp(epsilon))
