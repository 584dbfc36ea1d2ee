"""Cryptographically secure randomness for keys, masks and DP noise.

A ChaCha20 keystream (from `cryptography`) keyed with 32 bytes from `os.urandom` is turned
into integers, uniforms, Gaussians and Poissons. numpy's generators are not used for
anything secret: their state can be recovered from outputs.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy import special

_TWO53 = float(2**53)


class SecureRandom:
    """A ChaCha20-based generator; `seed=None` (the default) draws a fresh key from the OS.

    An explicit 32-byte seed is for reproducible audits and tests only: whoever holds it can
    regenerate every value.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is not None and len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        self._key = seed if seed is not None else os.urandom(32)
        self._calls = 0

    def random_bytes(self, n: int) -> bytes:
        """`n` bytes of keystream; each call uses a fresh nonce, so streams never overlap."""
        self._calls += 1
        nonce = bytes(8) + self._calls.to_bytes(8, "little")
        encryptor = Cipher(algorithms.ChaCha20(self._key, nonce), mode=None).encryptor()
        return encryptor.update(bytes(n))

    def uint64(self, n: int) -> np.ndarray:
        """`n` independent uniform 64-bit words."""
        return np.frombuffer(self.random_bytes(8 * n), dtype=np.uint64).copy()

    def bits(self, n: int, k: int) -> np.ndarray:
        """`n` integers uniform on [0, 2^k), 1 <= k <= 64, as uint64."""
        if not 1 <= k <= 64:
            raise ValueError(f"k must be in [1, 64], got {k}")
        return self.uint64(n) >> np.uint64(64 - k)

    def below(self, n: int, modulus: int) -> np.ndarray:
        """`n` integers uniform on [0, modulus), 2 <= modulus <= 2^64, as uint64; rejection
        sampling, so exactly uniform."""
        if not 2 <= modulus <= 2**64:
            raise ValueError(f"modulus must be in [2, 2^64], got {modulus}")
        limit = (2**64 // modulus) * modulus  # the largest multiple of modulus <= 2^64
        out = np.empty(0, dtype=np.uint64)
        while out.size < n:
            draw = self.uint64(n - out.size + 8)
            if limit < 2**64:
                draw = draw[draw < np.uint64(limit)]
            out = np.concatenate([out, draw])
        return out[:n] % np.uint64(modulus) if modulus < 2**64 else out[:n]

    def integer_below(self, modulus: int) -> int:
        """One integer uniform on [0, modulus) for any modulus >= 1 (a Python int), to
        within statistical distance 2^-128 (reduction of 128 extra random bits)."""
        if modulus < 1:
            raise ValueError(f"modulus must be >= 1, got {modulus}")
        draw = self.random_bytes((modulus.bit_length() + 128 + 7) // 8)
        return int.from_bytes(draw, "little") % modulus

    def uniform(self, n: int) -> np.ndarray:
        """`n` floats uniform on the open interval (0, 1), 53 random bits each."""
        return ((self.uint64(n) >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO53

    def normal(self, n: int, sigma: float = 1.0) -> np.ndarray:
        """`n` draws from N(0, sigma^2) by inverting the normal CDF."""
        return special.ndtri(self.uniform(n)) * sigma

    def poisson(self, n: int, lam: float) -> np.ndarray:
        """`n` draws from Poisson(lam) by inverting its CDF (exact up to float rounding).

        Start from a normal approximation of the quantile, then step to the smallest k with
        P(X <= k) >= u; each step is a vectorized CDF evaluation over the unsettled draws.
        """
        if not (lam >= 0 and np.isfinite(lam)):
            raise ValueError(f"Poisson rate must be a finite number >= 0, got {lam}")
        if lam == 0:
            return np.zeros(n, dtype=np.int64)
        u = self.uniform(n)
        k = np.floor(lam + np.sqrt(lam) * special.ndtri(u) + (special.ndtri(u) ** 2 - 1) / 6)
        k = k.clip(min=0)
        for _ in range(10_000):
            low = special.pdtr(k, lam) < u  # quantile is above k
            high = (k > 0) & (special.pdtr(k - 1, lam) >= u)  # quantile is below k
            if not (low.any() or high.any()):
                break
            k = k + low - high
        return k.astype(np.int64)
