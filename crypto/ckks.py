"""Joint counts under the PNS's CKKS key: the bank evaluates, the PNS reads one coefficient.

The PNS (the key owner, fresh keys for every training stage) encrypts, for every chunk of
N rows, polynomials in coefficient encoding: coefficient j holds 2^unit * 2^(w d) when
row j of the chunk belongs to group p * D + d of polynomial p, else 0 (D groups packed
per polynomial as w-bit digits; `encrypt_groups`). The bank, which holds no CKKS key,
multiplies each by its own plaintext polynomial b(X) = s_0 - sum_{j>=1} s_j X^(N-j) made
of its 0/1 status bits for those rows. Modulo X^N + 1 the constant coefficient of the
product is the inner product sum_j a_j s_j, i.e. 2^unit * sum_d 2^(w d) * count_d.
It sums the chunks and then, for circuit privacy (`masked_counts`):
- adds a fresh public-key encryption of zero, which makes the second component
  pseudorandom (RLWE), so the reply cannot be related to the PNS's own ciphertexts;
- adds a plaintext polynomial that is uniform modulo Q in every coefficient except the
  constant one: the PNS's decryption then shows nothing but that coefficient, whatever it
  put into its ciphertexts (perfect hiding, no statistical term);
- adds to the constant coefficient a flood uniform on [0, 2^flood_bits), which drowns the
  data-dependent encryption noise there (at most 2^noise_bound_bits for honestly made
  ciphertexts) to statistical distance 2^-40, plus the protocol's own additive terms
  (DP noise digits and a secure-aggregation mask uniform modulo Q).
The PNS decrypts and keeps only the constant coefficients (`constant_terms`); summed over
banks modulo Q the masks cancel and `decode_counts` splits the digits.

A PNS that deviates (other values than 0/1 indicators, crafted noise) can learn other
linear functions of the bank's status bits, read through that one coefficient; what bounds
it is what those bits are: the bank's randomized-response statuses (clients/bank.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from crypto import _sealio, _sealraw, framing
from crypto.ckks_keys import CKKSKeyPair, CKKSParams, PublicContext
from crypto.csprng import SecureRandom
from federation.errors import CryptoError

GROUPS_KIND = "ckks-groups"
COUNTS_KIND = "ckks-counts"
SUMS_KIND = "ckks-product-sums"

__all__ = [
    "CKKSKeyPair",
    "CKKSParams",
    "DigitLayout",
    "EncryptedGroups",
    "PublicContext",
    "constant_terms",
    "data_modulus",
    "decode_counts",
    "digit_constants",
    "encrypt_groups",
    "masked_counts",
    "product_sums",
]


@dataclass(frozen=True)
class DigitLayout:
    """How `n_groups` counts are packed: group g is digit g % D of polynomial g // D."""

    n_groups: int
    params: CKKSParams

    @property
    def per_poly(self) -> int:
        return self.params.digits_per_poly

    @property
    def n_polys(self) -> int:
        return -(-self.n_groups // self.per_poly)

    def digit_values(self, poly: int) -> list[int]:
        """2^unit * 2^(w d) for the digits d of polynomial `poly` (a group indicator)."""
        digits = min(self.per_poly, self.n_groups - poly * self.per_poly)
        unit, width = self.params.unit_bits, self.params.digit_bits
        return [1 << (unit + width * d) for d in range(digits)]


def data_modulus(context: PublicContext | CKKSKeyPair) -> tuple[list[int], int]:
    """The data-level primes and their product Q."""
    primes = _sealraw.primes_of(context.suite.context, context.suite.data_parms_id)
    modulus = 1
    for q in primes:
        modulus *= q
    return primes, modulus


def _chunks(n_rows: int, params: CKKSParams) -> int:
    return -(-n_rows // params.poly_modulus_degree)


def encrypt_groups(keys: CKKSKeyPair, groups: np.ndarray, n_groups: int) -> bytes:
    """PNS side: the digit-packed group indicators of every row, under its own key."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size == 0 or not np.issubdtype(groups.dtype, np.integer):
        raise CryptoError(f"encrypt_groups: groups must be a non-empty 1-D int array, got "
                          f"shape {groups.shape} dtype {groups.dtype}")
    if n_groups < 1 or groups.min() < 0 or groups.max() >= n_groups:
        raise CryptoError(f"encrypt_groups: group ids must lie in [0, {n_groups})")
    params, suite = keys.params, keys.suite
    n_chunks, degree = _chunks(groups.size, params), params.poly_modulus_degree
    if n_chunks > params.max_chunks:
        raise CryptoError(f"encrypt_groups: {groups.size} rows exceed {params.max_chunks} "
                          f"chunks of {degree}")
    layout = DigitLayout(n_groups, params)
    primes, _ = data_modulus(keys)
    poly_of, digit_of = np.divmod(groups.astype(np.int64), layout.per_poly)
    blobs = []
    for poly in range(layout.n_polys):
        table = _sealraw.residues_of(layout.digit_values(poly), primes)  # (L, digits)
        for k in range(n_chunks):
            rows = slice(k * degree, (k + 1) * degree)
            member = np.flatnonzero(poly_of[rows] == poly)
            residues = np.zeros((len(primes), degree), dtype=np.uint64)
            residues[:, member] = table[:, digit_of[rows][member]]
            plain = _sealraw.ntt_plaintext(suite, suite.data_parms_id, residues,
                                           float(2**params.unit_bits))
            blobs.append(_sealio.dump(keys.encryptor.encrypt_symmetric(plain)))
    header = {"param_id": params.param_id, "key_id": keys.key_id, "n_rows": int(groups.size),
              "n_groups": n_groups}
    return framing.pack(GROUPS_KIND, header, blobs)


@dataclass
class EncryptedGroups:
    """A PNS request as the bank opens it: ciphertexts[p][k] is polynomial p of chunk k."""

    context: PublicContext
    layout: DigitLayout
    n_rows: int
    ciphertexts: list[list[Any]]

    @classmethod
    def open(cls, data: bytes, context: PublicContext, n_rows: int, max_groups: int
             ) -> EncryptedGroups:
        """Validate a request against the PNS's public context and what the bank itself
        expects (its own row count, its own limit on groups); refuse anything else."""
        header, blobs = framing.unpack(data, GROUPS_KIND)
        params = context.params
        framing.expect(header, "param_id", params.param_id, GROUPS_KIND)
        framing.expect(header, "key_id", context.key_id, GROUPS_KIND)
        framing.expect(header, "n_rows", n_rows, GROUPS_KIND)
        n_groups = header.get("n_groups")
        if not isinstance(n_groups, int) or not 1 <= n_groups <= max_groups:
            raise CryptoError(f"{GROUPS_KIND}: {n_groups!r} groups, this bank allows 1 to "
                              f"{max_groups}")
        layout, n_chunks = DigitLayout(n_groups, params), _chunks(n_rows, params)
        if n_chunks > params.max_chunks:
            raise CryptoError(f"{GROUPS_KIND}: {n_chunks} chunks exceed {params.max_chunks}")
        if len(blobs) != layout.n_polys * n_chunks:
            raise CryptoError(f"{GROUPS_KIND}: expected {layout.n_polys * n_chunks} "
                              f"ciphertexts, found {len(blobs)}")
        cts = [[_load_fresh(context, blobs[p * n_chunks + k], f"{GROUPS_KIND} ({p}, {k})")
                for k in range(n_chunks)] for p in range(layout.n_polys)]
        return cls(context, layout, n_rows, cts)


def _load_fresh(context: PublicContext, blob: bytes, what: str) -> Any:
    ct = _sealio.load_into(seal.Ciphertext(), context.suite.context, blob, what)
    if (ct.parms_id() != context.suite.data_parms_id or ct.size() != 2
            or not ct.is_ntt_form()):
        raise CryptoError(f"{what}: not a fresh data-level CKKS ciphertext")
    return ct


def _status_plaintext(context: PublicContext, primes: list[int], bits: np.ndarray) -> Any:
    """b(X) = s_0 - sum_{j>=1} s_j X^(N-j): the constant coefficient of a(X) b(X) modulo
    X^N + 1 is then sum_j a_j s_j."""
    degree = context.params.poly_modulus_degree
    coeffs = np.zeros(degree, dtype=np.int64)
    coeffs[0] = bits[0]
    coeffs[degree - np.arange(1, bits.size)] = -bits[1:]
    residues = np.stack([np.where(coeffs < 0, q - 1, coeffs).astype(np.uint64)
                         for q in primes])
    suite = context.suite
    return _sealraw.ntt_plaintext(suite, suite.data_parms_id, residues, 1.0)


def product_sums(groups: EncryptedGroups, status_bits: np.ndarray) -> bytes:
    """Bank side, step 1: for every status column c and polynomial p, the encrypted
    digit-packed counts sum_rows [group] * status_bits[c, row] (not yet masked: the bank
    keeps these to serve a retry round with fresh noise and masks).

    status_bits: (n_columns, n_rows) of 0/1.
    """
    bits = np.asarray(status_bits)
    if bits.ndim != 2 or bits.shape[1] != groups.n_rows or not np.isin(bits, (0, 1)).all():
        raise CryptoError(f"product_sums: status bits must be 0/1 of shape (columns, "
                          f"{groups.n_rows}), got {bits.shape}")
    context, n_polys = groups.context, groups.layout.n_polys
    primes, _ = data_modulus(context)
    evaluator, degree = context.suite.evaluator, context.params.poly_modulus_degree
    blobs = []
    for column in bits.astype(np.int64):
        sums: list[Any] = [None] * n_polys
        for k in range(len(groups.ciphertexts[0])):
            chunk = column[k * degree:(k + 1) * degree]
            if not chunk.any():  # SEAL refuses a product by zero (a transparent result)
                continue
            plain = _status_plaintext(context, primes, chunk)
            for p in range(n_polys):
                product = seal.Ciphertext()
                evaluator.multiply_plain(groups.ciphertexts[p][k], plain, product)
                if sums[p] is None:
                    sums[p] = product
                else:
                    evaluator.add_inplace(sums[p], product)
        for p in range(n_polys):
            if sums[p] is None:  # no status bit set in this column: a fresh encryption of 0
                sums[p] = seal.Ciphertext()
                context.encryptor.encrypt_zero(context.suite.data_parms_id, sums[p])
                sums[p].scale = groups.ciphertexts[p][0].scale
        blobs += [_sealio.dump(ct) for ct in sums]
    header = {"param_id": context.params.param_id, "key_id": context.key_id,
              "n_columns": int(bits.shape[0]), "n_polys": n_polys,
              "n_groups": groups.layout.n_groups}
    return framing.pack(SUMS_KIND, header, blobs)


def masked_counts(context: PublicContext, sums: bytes, constants: Sequence[Sequence[int]],
                  rng: SecureRandom | None = None) -> bytes:
    """Bank side, step 2: the reply. Every product sum is re-randomized and masked; its
    constant coefficient also carries `constants[c][p]` (any sign, taken modulo Q) and
    the flood."""
    header, blobs = framing.unpack(sums, SUMS_KIND)
    framing.expect(header, "param_id", context.params.param_id, SUMS_KIND)
    framing.expect(header, "key_id", context.key_id, SUMS_KIND)
    n_columns, n_polys = int(header["n_columns"]), int(header["n_polys"])
    if len(constants) != n_columns or any(len(row) != n_polys for row in constants):
        raise CryptoError(f"masked_counts: constants must be ({n_columns}, {n_polys})")
    rng = rng or SecureRandom()
    primes, modulus = data_modulus(context)
    out = []
    for i, blob in enumerate(blobs):
        acc = _sealio.load_into(seal.Ciphertext(), context.suite.context, blob, SUMS_KIND)
        constant = int(constants[i // n_polys][i % n_polys]) % modulus
        out.append(_mask(context, primes, acc, constant, rng))
    return framing.pack(COUNTS_KIND, {**header}, out)


def _mask(context: PublicContext, primes: list[int], acc: Any, constant: int,
          rng: SecureRandom) -> bytes:
    suite, params = context.suite, context.params
    zero = seal.Ciphertext()
    context.encryptor.encrypt_zero(suite.data_parms_id, zero)
    zero.scale = acc.scale
    suite.evaluator.add_inplace(acc, zero)
    flood = rng.integer_below(1 << params.flood_bits)
    residues = np.stack([rng.below(params.poly_modulus_degree, q) for q in primes])
    residues[:, 0] = [(constant + flood) % q for q in primes]
    mask = _sealraw.ntt_plaintext(suite, suite.data_parms_id, residues, acc.scale)
    suite.evaluator.add_plain_inplace(acc, mask)
    return _sealio.dump(acc)


def constant_terms(keys: CKKSKeyPair, data: bytes, n_columns: int, n_polys: int
                   ) -> list[list[int]]:
    """PNS side: the constant coefficient, in [0, Q), of every ciphertext of a reply."""
    header, blobs = framing.unpack(data, COUNTS_KIND)
    framing.expect(header, "param_id", keys.params.param_id, COUNTS_KIND)
    framing.expect(header, "key_id", keys.key_id, COUNTS_KIND)
    framing.expect(header, "n_columns", n_columns, COUNTS_KIND)
    framing.expect(header, "n_polys", n_polys, COUNTS_KIND)
    if len(blobs) != n_columns * n_polys:
        raise CryptoError(f"{COUNTS_KIND}: expected {n_columns * n_polys} ciphertexts, "
                          f"found {len(blobs)}")
    primes, _ = data_modulus(keys)
    out: list[list[int]] = []
    for c in range(n_columns):
        row = []
        for p in range(n_polys):
            what = f"{COUNTS_KIND} ({c}, {p})"
            ct = _sealio.load_into(seal.Ciphertext(), keys.suite.context,
                                   blobs[c * n_polys + p], what)
            if ct.parms_id() != keys.suite.data_parms_id or ct.size() != 2:
                raise CryptoError(f"{what}: not a data-level CKKS ciphertext")
            plain = seal.Plaintext()
            keys.decryptor.decrypt(ct, plain)
            row.append(_sealraw.constant_coefficient(plain, primes))
        out.append(row)
    return out


def digit_constants(layout: DigitLayout, values: np.ndarray) -> list[int]:
    """Integer values per group (e.g. DP noise) placed as the digits of each polynomial's
    constant coefficient: 2^unit * sum_d 2^(w d) values[p * D + d]."""
    values = np.asarray(values, dtype=np.int64)
    if values.shape != (layout.n_groups,):
        raise CryptoError(f"digit_constants: expected {layout.n_groups} values")
    return [sum(int(v) * w for v, w in zip(
        values[p * layout.per_poly:(p + 1) * layout.per_poly], layout.digit_values(p),
        strict=True)) for p in range(layout.n_polys)]


def decode_counts(layout: DigitLayout, totals: Sequence[Sequence[int]], modulus: int
                  ) -> np.ndarray:
    """(n_columns, n_groups) integer counts from constant coefficients summed modulo Q:
    centre, round away the floods (below a quarter unit in total), split signed digits."""
    params = layout.params
    unit, width, half = params.unit_bits, params.digit_bits, 1 << (params.digit_bits - 1)
    out = np.zeros((len(totals), layout.n_groups), dtype=np.int64)
    for c, row in enumerate(totals):
        for p, total in enumerate(row):
            centred = total % modulus
            centred -= modulus if centred > modulus // 2 else 0
            value = (centred + (1 << (unit - 1))) >> unit
            for d in range(len(layout.digit_values(p))):
                digit = ((value + half) % (1 << width)) - half
                out[c, p * layout.per_poly + d] = digit
                value = (value - digit) >> width
    return out
