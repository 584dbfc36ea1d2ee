"""CKKS packing and the PNS's masked ciphertext-plaintext computations.

Flow: the bank encrypts each row's one-hot status column by column (`encrypt_onehot`),
two rows per slot: slot i of chunk k holds row k * 2S + i in its real part and row
k * 2S + S + i in its imaginary part (S = slot_count), which halves ciphertexts, bytes and
the PNS's work. A plaintext a - i b multiplies the pair (x + i y) into real part
a x + b y, so one product serves both rows. The PNS, holding only the public
context, computes slot-wise ciphertext-plaintext products accumulated over chunks (no
rotations), floods the noise and adds a fresh uniform integer mask to every slot
(`grouped_sums`, `rowwise_scores`). The bank decrypts, rounds every slot to an integer and
returns masked integers (`decrypt_slot_sums`, `decrypt_rows`); the PNS removes its masks.

Category 0 is not encrypted (its indicator is 1 minus the others'), saving 1/n_categories
of the bytes. `decrypt_slot_sums` fills column 0 with minus the sum of the other columns
and `MaskedTable.mask_totals` is set up so that `result - mask_totals` is the full table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from crypto import _sealio, framing
from crypto.ckks_keys import CKKSKeyPair, CKKSParams, PublicContext, _Suite
from crypto.csprng import SecureRandom
from federation.errors import CryptoError
from federation.transcript import PayloadClass

PACKING = "complex-2"  # two rows per slot (real and imaginary part)

__all__ = [
    "CKKSKeyPair",
    "CKKSParams",
    "EncryptedColumns",
    "MaskedRows",
    "MaskedTable",
    "PublicContext",
    "decrypt_rows",
    "decrypt_slot_sums",
    "encrypt_onehot",
    "grouped_sums",
    "rowwise_scores",
]


@dataclass
class EncryptedColumns:
    """A bank's encrypted one-hot status: ciphertexts[c][k] is category categories[c], chunk k."""

    params: CKKSParams
    key_id: str
    n_rows: int
    n_categories: int
    blobs: list[list[bytes]]
    context: PublicContext | None = None
    payload_class = PayloadClass.CIPHERTEXT
    _cts: list[list[Any]] | None = field(default=None, repr=False)

    @property
    def categories(self) -> list[int]:
        return list(range(1, self.n_categories))

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // (2 * self.params.slot_count))

    def to_bytes(self) -> bytes:
        header = {
            "param_id": self.params.param_id,
            "key_id": self.key_id,
            "n_rows": self.n_rows,
            "n_categories": self.n_categories,
            "packing": PACKING,
        }
        return framing.pack("ckks-onehot", header, [b for col in self.blobs for b in col])

    @classmethod
    def from_bytes(cls, data: bytes, public_context: PublicContext) -> EncryptedColumns:
        """Open and validate a bank's payload against that bank's public context."""
        kind = "ckks-onehot"
        header, blobs = framing.unpack(data, kind)
        framing.expect(header, "param_id", public_context.params.param_id, kind)
        framing.expect(header, "key_id", public_context.key_id, kind)
        framing.expect(header, "packing", PACKING, kind)
        n_rows, n_cat = int(header.get("n_rows", -1)), int(header.get("n_categories", -1))
        if n_rows < 1 or n_cat < 2:
            raise CryptoError(f"{kind}: bad shape n_rows={n_rows}, n_categories={n_cat}")
        enc = cls(public_context.params, public_context.key_id, n_rows, n_cat, [])
        if len(blobs) != (n_cat - 1) * enc.n_chunks:
            raise CryptoError(
                f"{kind}: expected {(n_cat - 1) * enc.n_chunks} ciphertexts, found {len(blobs)}"
            )
        enc.blobs = [blobs[i : i + enc.n_chunks] for i in range(0, len(blobs), enc.n_chunks)]
        enc.context = public_context
        enc._cts = [
            [_load_ct(public_context.suite, b, f"{kind} ciphertext") for b in col]
            for col in enc.blobs
        ]
        return enc

    @property
    def nbytes(self) -> int:
        return sum(len(b) for col in self.blobs for b in col)


@dataclass
class MaskedTable:
    """Grouped sums under the bank's key with every slot masked; mask_totals stay at the PNS."""

    ciphertexts: list[bytes]
    mask_totals: np.ndarray
    header: dict[str, Any]
    payload_class = PayloadClass.MASKED

    def ciphertext_bytes(self) -> bytes:
        return framing.pack("ckks-masked-table", self.header, self.ciphertexts)


@dataclass
class MaskedRows:
    """Per-row scores under the bank's key, masked; `unmask` turns the bank's reply into scores."""

    ciphertexts: list[bytes]
    mask_offsets: np.ndarray
    frac_bits: int
    header: dict[str, Any]
    payload_class = PayloadClass.MASKED

    def ciphertext_bytes(self) -> bytes:
        return framing.pack("ckks-masked-rows", self.header, self.ciphertexts)

    def unmask(self, decrypted: np.ndarray) -> np.ndarray:
        """Scores (float64, n_rows) from `decrypt_rows`'s int64 output."""
        if decrypted.shape != self.mask_offsets.shape:
            raise CryptoError(
                f"masked rows: reply has shape {decrypted.shape}, "
                f"expected {self.mask_offsets.shape}"
            )
        return (decrypted - self.mask_offsets).astype(np.float64) / float(2**self.frac_bits)


def _load_ct(suite: _Suite, blob: bytes, what: str) -> Any:
    ct = _sealio.load_into(seal.Ciphertext(), suite.context, blob, what)
    if ct.parms_id() != suite.data_parms_id or ct.size() != 2:
        raise CryptoError(f"{what}: ciphertext is not a fresh data-level CKKS ciphertext")
    return ct


def _packed(real: np.ndarray, imag: np.ndarray, slots: int) -> list[complex]:
    """Slot values real + i * imag, zero-padded to `slots`."""
    out = np.zeros(slots, dtype=np.complex128)
    out.real[: len(real)] = real
    out.imag[: len(imag)] = imag
    return out.tolist()


def _halves(values: np.ndarray, chunk: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `chunk` that sit in the real and in the imaginary parts of its slots."""
    start = chunk * 2 * slots
    return values[start : start + slots], values[start + slots : start + 2 * slots]


def encrypt_onehot(keys: CKKSKeyPair, status: np.ndarray, n_categories: int) -> EncryptedColumns:
    """Encrypt per-row one-hot indicators of `status` (ints in [0, n_categories)), column-major.

    Uses SEAL's secret-key encryption, whose serialized form stores the mask polynomial as a
    seed, halving the bytes against public-key encryption.
    """
    status = np.asarray(status)
    if status.ndim != 1 or status.size == 0 or not np.issubdtype(status.dtype, np.integer):
        raise CryptoError(f"encrypt_onehot: status must be a non-empty 1-D int array, got "
                          f"shape {status.shape} dtype {status.dtype}")
    if n_categories < 2 or status.min() < 0 or status.max() >= n_categories:
        raise CryptoError(
            f"encrypt_onehot: status values must lie in [0, {n_categories}), found "
            f"[{status.min()}, {status.max()}]"
        )
    params, suite = keys.params, keys.suite
    slots, scale = params.slot_count, float(2**params.encrypt_scale_bits)
    enc = EncryptedColumns(params, keys.key_id, int(status.size), n_categories, [])
    plain = seal.Plaintext()
    for category in enc.categories:
        column = []
        indicator = (status == category).astype(np.float64)
        for k in range(enc.n_chunks):
            suite.encoder.encode(_packed(*_halves(indicator, k, slots), slots), scale, plain)
            column.append(_sealio.dump(keys.encryptor.encrypt_symmetric(plain)))
        enc.blobs.append(column)
    return enc


def _require_context(enc: EncryptedColumns, what: str) -> tuple[PublicContext, list[list[Any]]]:
    if enc.context is None or enc._cts is None:
        raise CryptoError(f"{what}: open the bank's payload with EncryptedColumns.from_bytes first")
    return enc.context, enc._cts


def _integer_array(values: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != shape:
        raise CryptoError(f"{what}: expected shape {shape}, got {values.shape}")
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise CryptoError(f"{what}: values must be finite integers")
    return values.astype(np.int64)


def _mask(ctx: PublicContext, acc: Any, rng: SecureRandom) -> tuple[bytes, np.ndarray]:
    """Flood the noise, add a fresh uniform integer mask to every slot; returns (bytes, mask).

    The flood is a fresh public-key encryption of zero times 2^flood_bits: it re-randomizes
    the ciphertext and drowns the noise term that depends on the PNS's plaintexts.
    """
    suite, params = ctx.suite, ctx.params
    flood = seal.Ciphertext()
    ctx.encryptor.encrypt_zero(suite.data_parms_id, flood)
    const = seal.Plaintext()
    suite.encoder.encode(float(2**params.flood_bits), suite.data_parms_id, 1.0, const)
    suite.evaluator.multiply_plain_inplace(flood, const)
    flood.scale = acc.scale
    suite.evaluator.add_inplace(acc, flood)
    # Both parts are masked; only the real part carries the result, the imaginary part a
    # by-product of the packing that must not be seen either.
    mask = rng.bits(params.slot_count, params.mask_bits).astype(np.int64)
    imag_mask = rng.bits(params.slot_count, params.mask_bits).astype(np.float64)
    mask_plain = seal.Plaintext()
    suite.encoder.encode(_packed(mask.astype(np.float64), imag_mask, params.slot_count),
                         acc.parms_id(), acc.scale, mask_plain)
    suite.evaluator.add_plain_inplace(acc, mask_plain)
    # Dropping one prime after masking cuts the reply by a third; what it rounds away is a
    # function of the already masked and flooded ciphertext, so it reveals nothing more.
    suite.evaluator.rescale_to_next_inplace(acc)
    return _sealio.dump(acc), mask


def grouped_sums(
    enc: EncryptedColumns,
    group: np.ndarray,
    n_groups: int,
    weights: np.ndarray | None = None,
    rng: SecureRandom | None = None,
) -> MaskedTable:
    """For every group g and category c: sum over rows with group g of weight * indicator_c.

    `group` holds ints in [0, n_groups); `weights` (optional) integers. One 0/1 (or weight)
    plaintext is encoded per group and chunk and reused across categories.
    """
    ctx, cts = _require_context(enc, "grouped_sums")
    group = _integer_array(group, (enc.n_rows,), "grouped_sums: group")
    if n_groups < 1 or group.min() < 0 or group.max() >= n_groups:
        raise CryptoError(f"grouped_sums: group ids must lie in [0, {n_groups})")
    w = np.ones(enc.n_rows, np.int64) if weights is None else _integer_array(
        weights, (enc.n_rows,), "grouped_sums: weights")
    if np.abs(w).max() * enc.n_chunks >= 2 ** (ctx.params.mask_bits - 8):
        raise CryptoError("grouped_sums: weights too large for the mask range (|w| x chunks "
                          f"must stay below 2^{ctx.params.mask_bits - 8})")
    rng = rng or SecureRandom()
    suite, params = ctx.suite, ctx.params
    slots, plain_scale = params.slot_count, float(2**params.plain_scale_bits)
    n_enc = len(enc.categories)
    acc: list[list[Any]] = [[None] * n_enc for _ in range(n_groups)]
    plain, product = seal.Plaintext(), seal.Ciphertext()  # scratch objects, reused
    for k in range(enc.n_chunks):
        (g_re, g_im), (w_re, w_im) = _halves(group, k, slots), _halves(w, k, slots)
        for g in np.union1d(g_re, g_im):
            values = _packed(np.where(g_re == g, w_re, 0), -np.where(g_im == g, w_im, 0), slots)
            suite.encoder.encode(values, suite.data_parms_id, plain_scale, plain)
            for c in range(n_enc):
                if acc[g][c] is None:
                    acc[g][c] = seal.Ciphertext()
                    suite.evaluator.multiply_plain(cts[c][k], plain, acc[g][c])
                else:
                    suite.evaluator.multiply_plain(cts[c][k], plain, product)
                    suite.evaluator.add_inplace(acc[g][c], product)
    blobs, totals = _mask_all(ctx, acc, rng)
    group_totals = np.bincount(group, weights=w, minlength=n_groups).astype(np.int64)
    mask_totals = np.zeros((n_groups, enc.n_categories), np.int64)
    mask_totals[:, 1:] = totals
    mask_totals[:, 0] = -totals.sum(axis=1) - group_totals
    header = {"param_id": params.param_id, "key_id": enc.key_id, "n_groups": n_groups,
              "n_categories": enc.n_categories}
    return MaskedTable(blobs, mask_totals, header)


def _mask_all(
    ctx: PublicContext, acc: list[list[Any]], rng: SecureRandom
) -> tuple[list[bytes], np.ndarray]:
    suite, params = ctx.suite, ctx.params
    product_scale = float(2 ** (params.encrypt_scale_bits + params.plain_scale_bits))
    totals = np.zeros((len(acc), len(acc[0])), np.int64)
    blobs = []
    for g, row in enumerate(acc):
        for c, ct in enumerate(row):
            if ct is None:  # no row of this group: an encryption of zero at the product scale
                ct = seal.Ciphertext()
                ctx.encryptor.encrypt_zero(suite.data_parms_id, ct)
                ct.scale = product_scale
            blob, mask = _mask(ctx, ct, rng)
            totals[g, c] = int(mask.sum())
            blobs.append(blob)
    return blobs, totals


def rowwise_scores(
    enc: EncryptedColumns,
    weights: np.ndarray,
    frac_bits: int = 16,
    rng: SecureRandom | None = None,
) -> MaskedRows:
    """Per row: sum_c weights[row, c] * indicator_c[row], in fixed point with `frac_bits`."""
    ctx, cts = _require_context(enc, "rowwise_scores")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (enc.n_rows, enc.n_categories) or not np.all(np.isfinite(weights)):
        raise CryptoError(f"rowwise_scores: weights must be finite with shape "
                          f"{(enc.n_rows, enc.n_categories)}, got {weights.shape}")
    fixed = np.round(weights * 2.0**frac_bits).astype(np.int64)
    if np.abs(fixed).max() >= 2 ** (ctx.params.mask_bits - 8):
        raise CryptoError("rowwise_scores: weights too large for the mask range; lower frac_bits")
    rng = rng or SecureRandom()
    suite, params = ctx.suite, ctx.params
    slots, plain_scale = params.slot_count, float(2**params.plain_scale_bits)
    offsets = np.empty(enc.n_rows, np.int64)
    blobs, plain, zero = [], seal.Plaintext(), np.zeros(0)
    # One reply per block of `slots` rows: block j is the real (j even) or imaginary (j odd)
    # half of chunk j // 2; multiplying by -i * d moves the imaginary half's value to real.
    for j, start in enumerate(range(0, enc.n_rows, slots)):
        rows = fixed[start : start + slots]
        acc = None
        for c, category in enumerate(enc.categories):
            # indicator_0 = 1 - sum of the others, so category c contributes w_c - w_0.
            delta = rows[:, category] - rows[:, 0]
            values = _packed(delta, zero, slots) if j % 2 == 0 else _packed(zero, -delta, slots)
            suite.encoder.encode(values, suite.data_parms_id, plain_scale, plain)
            product = seal.Ciphertext()
            suite.evaluator.multiply_plain(cts[c][j // 2], plain, product)
            if acc is None:
                acc = product
            else:
                suite.evaluator.add_inplace(acc, product)
        blob, mask = _mask(ctx, acc, rng)
        blobs.append(blob)
        offsets[start : start + len(rows)] = mask[: len(rows)] - rows[:, 0]
    header = {"param_id": params.param_id, "key_id": enc.key_id, "n_rows": enc.n_rows}
    return MaskedRows(blobs, offsets, frac_bits, header)


def _decrypt_rounded(keys: CKKSKeyPair, blob: bytes, what: str) -> np.ndarray:
    """Decrypt one masked ciphertext and round every slot to the nearest integer."""
    ct = _sealio.load_into(seal.Ciphertext(), keys.suite.context, blob, what)
    if ct.size() != 2:
        raise CryptoError(f"{what}: unexpected ciphertext size {ct.size()}")
    plain = seal.Plaintext()
    try:
        keys.decryptor.decrypt(ct, plain)
        values = np.asarray(keys.suite.encoder.decode_complex(plain))
    except Exception as exc:  # SEAL refuses inconsistent ciphertexts here
        raise CryptoError(f"{what}: decryption failed ({exc})") from exc
    limit = 2.0 ** (keys.params.mask_bits + 8)
    if not np.all(np.isfinite(values)) or np.abs(values).max() > limit:
        raise CryptoError(f"{what}: decrypts to values outside the mask range (wrong key?)")
    return np.round(values.real).astype(np.int64)


def _open_reply(keys: CKKSKeyPair, data: bytes, kind: str) -> tuple[dict[str, Any], list[bytes]]:
    if not isinstance(keys, CKKSKeyPair):
        raise CryptoError(f"{kind}: decryption needs the bank's CKKSKeyPair, got "
                          f"{type(keys).__name__} (a public context cannot decrypt)")
    header, blobs = framing.unpack(data, kind)
    framing.expect(header, "param_id", keys.params.param_id, kind)
    framing.expect(header, "key_id", keys.key_id, kind)
    return header, blobs


def decrypt_slot_sums(keys: CKKSKeyPair, data: bytes) -> np.ndarray:
    """Bank side of `grouped_sums`: int64 (n_groups, n_categories) = counts + mask totals.

    Column 0 (not encrypted) is minus the sum of the others; see the module docstring.
    """
    kind = "ckks-masked-table"
    header, blobs = _open_reply(keys, data, kind)
    n_groups, n_cat = int(header.get("n_groups", 0)), int(header.get("n_categories", 0))
    if n_groups < 1 or n_cat < 2 or len(blobs) != n_groups * (n_cat - 1):
        raise CryptoError(f"{kind}: {len(blobs)} ciphertexts do not fit {n_groups}x{n_cat - 1}")
    out = np.zeros((n_groups, n_cat), np.int64)
    for i, blob in enumerate(blobs):
        g, c = divmod(i, n_cat - 1)
        out[g, c + 1] = _decrypt_rounded(keys, blob, f"{kind} cell ({g}, {c + 1})").sum()
    out[:, 0] = -out[:, 1:].sum(axis=1)
    return out


def decrypt_rows(keys: CKKSKeyPair, data: bytes) -> np.ndarray:
    """Bank side of `rowwise_scores`: int64 (n_rows,) masked fixed-point scores."""
    kind = "ckks-masked-rows"
    header, blobs = _open_reply(keys, data, kind)
    n_rows = int(header.get("n_rows", 0))
    slots = keys.params.slot_count
    if n_rows < 1 or len(blobs) != -(-n_rows // slots):
        raise CryptoError(f"{kind}: {len(blobs)} ciphertexts do not cover {n_rows} rows")
    parts = [_decrypt_rounded(keys, b, f"{kind} chunk {k}") for k, b in enumerate(blobs)]
    return np.concatenate(parts)[:n_rows]
