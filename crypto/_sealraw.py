"""Polynomials in and out of SEAL objects, coefficient by coefficient.

The joint-count protocol (crypto/ckks.py) needs exact integer polynomials (coefficient
encoding) and the exact constant coefficient of a decryption, which SEAL's CKKS encoder
(slot encoding, floating point) cannot give. TenSEAL's bindings read a SEAL object's
coefficients (`dyn_array`) but write them only through serialization, so objects are
built here as uncompressed SEAL serializations (SEAL's own format, version 4) and loaded,
which also makes SEAL validate every coefficient against its modulus. All arithmetic on
ciphertexts stays SEAL's (its NTT, products and sums).

Layout: an RNS polynomial is an (L, N) uint64 array, residues modulo each prime of the
level; ciphertexts are (size, L, N).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from crypto import _sealio

_SEAL_MAGIC = 0xA15E
_SEAL_VERSION = (4, 3)  # what TenSEAL 0.3.18 bundles; compression mode "none"


def _header(total: int) -> bytes:
    major, minor = _SEAL_VERSION
    return struct.pack("<HBBBBHQ", _SEAL_MAGIC, 16, major, minor, 0, 0, total)


def _dyn_array(values: np.ndarray) -> bytes:
    body = struct.pack("<Q", values.size) + values.astype("<u8", copy=False).tobytes()
    return _header(16 + len(body)) + body


def _parms(parms_id: Any) -> bytes:
    return struct.pack("<4Q", *parms_id)


def primes_of(context: Any, parms_id: Any) -> list[int]:
    """The coefficient-modulus primes of one level."""
    return [m.value() for m in context.get_context_data(parms_id).parms().coeff_modulus()]


def read_coefficients(obj: Any) -> np.ndarray:
    """Every stored coefficient of a SEAL Plaintext or Ciphertext, flat, as uint64."""
    data = obj.dyn_array()
    n = data.size()
    return np.fromiter((data[i] for i in range(n)), dtype=np.uint64, count=n)


def load_ciphertext(context: Any, parms_id: Any, polys: np.ndarray, ntt_form: bool,
                    scale: float) -> Any:
    """A SEAL Ciphertext holding `polys` (size, L, N)."""
    size, levels, degree = polys.shape
    body = (_parms(parms_id) + bytes([1 if ntt_form else 0])
            + struct.pack("<QQQdQ", size, degree, levels, scale, 1) + _dyn_array(polys.ravel()))
    return _sealio.load_into(seal.Ciphertext(), context, _header(16 + len(body)) + body,
                             "ciphertext built from coefficients")


def load_ntt_plaintext(context: Any, parms_id: Any, ntt: np.ndarray, scale: float) -> Any:
    """A CKKS Plaintext (NTT form at `parms_id`) holding the evaluations `ntt` (L, N)."""
    body = _parms(parms_id) + struct.pack("<Qd", ntt.size, scale) + _dyn_array(ntt.ravel())
    return _sealio.load_into(seal.Plaintext(), context, _header(16 + len(body)) + body,
                             "plaintext built from coefficients")


def ntt_plaintext(suite: Any, parms_id: Any, residues: np.ndarray, scale: float) -> Any:
    """The CKKS Plaintext whose coefficient-domain polynomial has `residues` (L, N).

    SEAL's own NTT does the transform: the polynomial is loaded as the first part of a
    scratch ciphertext in coefficient form and transformed in place. (The second part is
    the constant 1 so that SEAL does not refuse a "transparent" ciphertext.)
    """
    levels, degree = residues.shape
    polys = np.zeros((2, levels, degree), dtype=np.uint64)
    polys[0] = residues
    polys[1, :, 0] = 1
    scratch = load_ciphertext(suite.context, parms_id, polys, ntt_form=False, scale=1.0)
    suite.evaluator.transform_to_ntt_inplace(scratch)
    ntt = read_coefficients(scratch)[: levels * degree]
    return load_ntt_plaintext(suite.context, parms_id, ntt, scale)


def residues_of(values: Any, primes: list[int]) -> np.ndarray:
    """Integers (any size, any sign; a sequence of Python ints) as residues (L, len)."""
    ints = [int(v) for v in values]
    return np.array([[v % q for v in ints] for q in primes], dtype=np.uint64)


def constant_coefficient(plain: Any, primes: list[int]) -> int:
    """The constant coefficient of an NTT-form plaintext, as an integer modulo the product
    of `primes` in [0, Q).

    The negacyclic NTT evaluates the polynomial at the N primitive 2N-th roots of unity,
    and the sum of those evaluations is N times the constant coefficient (every other power
    sums to zero), whatever order SEAL stores them in.
    """
    degree = plain.coeff_count() // len(primes)
    values = read_coefficients(plain).reshape(len(primes), degree)
    modulus, total = 1, 0
    for q in primes:
        modulus *= q
    for q, row in zip(primes, values, strict=True):
        residue = sum(int(v) for v in row.tolist()) % q * pow(degree, -1, q) % q
        cofactor = modulus // q
        total += residue * cofactor * pow(cofactor, -1, q)
    return total % modulus
