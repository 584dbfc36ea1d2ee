"""Joint counts under the PNS's CKKS key: exact counts, what the reply hides, every error."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal
from scipy import stats

from crypto import _sealio, _sealraw, framing
from crypto.ckks import (
    CKKSKeyPair,
    CKKSParams,
    DigitLayout,
    EncryptedGroups,
    PublicContext,
    constant_terms,
    data_modulus,
    decode_counts,
    digit_constants,
    encrypt_groups,
    masked_counts,
    product_sums,
)
from crypto.csprng import SecureRandom
from federation.errors import CryptoError

N_ROWS, N_GROUPS = 20_000, 12  # 3 chunks of 8192 rows, the last one partly filled


@pytest.fixture(scope="module")
def keys() -> CKKSKeyPair:
    return CKKSKeyPair.generate()


@pytest.fixture(scope="module")
def public(keys) -> PublicContext:
    return PublicContext.from_bytes(keys.public_context_bytes())


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"group": rng.integers(0, N_GROUPS, N_ROWS),
            "bits": rng.integers(0, 2, (2, N_ROWS)).astype(np.int8)}


@pytest.fixture(scope="module")
def request_blob(keys, data) -> bytes:
    return encrypt_groups(keys, data["group"], N_GROUPS)


def _truth(data) -> np.ndarray:
    truth = np.zeros((2, N_GROUPS), np.int64)
    for c in range(2):
        np.add.at(truth[c], data["group"], data["bits"][c])
    return truth


def _reply(public, request_blob, bits, noise) -> bytes:
    groups = EncryptedGroups.open(request_blob, public, N_ROWS, 64)
    layout = groups.layout
    constants = [digit_constants(layout, noise[c]) for c in range(bits.shape[0])]
    return masked_counts(public, product_sums(groups, bits), constants)


def test_counts_are_exact_with_noise_digits_of_any_sign(keys, public, request_blob, data):
    noise = np.random.default_rng(1).integers(-500, 500, (2, N_GROUPS))
    reply = _reply(public, request_blob, data["bits"], noise)
    layout = DigitLayout(N_GROUPS, keys.params)
    terms = constant_terms(keys, reply, 2, layout.n_polys)
    counts = decode_counts(layout, terms, data_modulus(keys)[1])
    np.testing.assert_array_equal(counts, _truth(data) + noise)


def test_secure_aggregation_masks_cancel_only_in_the_sum(keys, public, request_blob, data):
    """Two banks' replies with masks m and -m (mod Q): each alone decodes to garbage, the
    sum of their constant coefficients to the sum of both counts."""
    layout = DigitLayout(N_GROUPS, keys.params)
    _, modulus = data_modulus(keys)
    rng = SecureRandom()
    masks = [[rng.integer_below(modulus) for _ in range(layout.n_polys)] for _ in range(2)]
    groups = EncryptedGroups.open(request_blob, public, N_ROWS, 64)
    sums = product_sums(groups, data["bits"])
    replies = [masked_counts(public, sums, [[sign * m for m in row] for row in masks])
               for sign in (1, -1)]
    terms = [constant_terms(keys, r, 2, layout.n_polys) for r in replies]
    alone = decode_counts(layout, terms[0], modulus)
    assert not np.array_equal(alone, _truth(data))
    total = [[(a + b) % modulus for a, b in zip(ra, rb, strict=True)]
             for ra, rb in zip(*terms, strict=True)]
    np.testing.assert_array_equal(decode_counts(layout, total, modulus), 2 * _truth(data))


def test_reply_shows_the_pns_nothing_but_the_constant_coefficient(keys, public, request_blob,
                                                                  data):
    """Every other coefficient of the PNS's decryption is uniform modulo each prime
    (chi-square on 16 bins per prime), and differs between two replies to the same request:
    it carries nothing of the bank's bits."""
    primes, _ = data_modulus(keys)
    noise = np.zeros((2, N_GROUPS), np.int64)
    blobs = [framing.unpack(_reply(public, request_blob, data["bits"], noise),
                            "ckks-counts")[1][0] for _ in range(2)]
    decrypted = []
    for blob in blobs:
        ct = _sealio.load_into(seal.Ciphertext(), keys.suite.context, blob, "reply")
        plain = seal.Plaintext()
        keys.decryptor.decrypt(ct, plain)
        evaluator = keys.suite.evaluator
        scratch = _sealraw.load_ciphertext(
            keys.suite.context, keys.suite.data_parms_id,
            np.stack([_sealraw.read_coefficients(plain).reshape(len(primes), -1),
                      np.eye(len(primes), keys.params.poly_modulus_degree, dtype=np.uint64)]),
            ntt_form=True, scale=1.0)
        evaluator.transform_from_ntt_inplace(scratch)
        coeffs = _sealraw.read_coefficients(scratch)[: len(primes) * 8192]
        decrypted.append(coeffs.reshape(len(primes), -1))
    for i, q in enumerate(primes):
        others = decrypted[0][i, 1:].astype(np.float64) / q
        counts = np.histogram(others, bins=16, range=(0, 1))[0]
        assert stats.chisquare(counts).pvalue > 1e-4
        assert (decrypted[0][i, 1:] != decrypted[1][i, 1:]).mean() > 0.99


def test_request_validated_against_what_the_bank_expects(keys, public, request_blob):
    with pytest.raises(CryptoError, match="n_rows mismatch"):
        EncryptedGroups.open(request_blob, public, N_ROWS + 1, 64)
    with pytest.raises(CryptoError, match="12 groups, this bank allows 1 to 8"):
        EncryptedGroups.open(request_blob, public, N_ROWS, 8)
    other = CKKSKeyPair.generate().public_context()
    with pytest.raises(CryptoError, match="key_id mismatch"):
        EncryptedGroups.open(request_blob, other, N_ROWS, 64)
    with pytest.raises(CryptoError, match="param_id mismatch"):
        EncryptedGroups.open(request_blob, CKKSKeyPair.generate(
            CKKSParams(max_chunks=512)).public_context(), N_ROWS, 64)


@pytest.mark.parametrize("cut", [1, 100, 50_000])
def test_truncated_or_corrupted_requests_rejected(public, request_blob, cut):
    with pytest.raises(CryptoError, match="checksum|too short"):
        EncryptedGroups.open(request_blob[:-cut], public, N_ROWS, 64)
    bad = bytearray(request_blob)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(CryptoError, match="checksum"):
        EncryptedGroups.open(bytes(bad), public, N_ROWS, 64)


def test_stale_or_foreign_ciphertexts_inside_a_valid_frame_rejected(keys, public,
                                                                   request_blob):
    header, blobs = framing.unpack(request_blob, "ckks-groups")
    with pytest.raises(CryptoError, match="not a valid SEAL object"):
        EncryptedGroups.open(framing.pack("ckks-groups", header, [b"\x00" * 64] + blobs[1:]),
                             public, N_ROWS, 64)
    lower = seal.Ciphertext()
    keys.suite.evaluator.mod_switch_to_next(
        _sealio.load_into(seal.Ciphertext(), keys.suite.context, blobs[0], "ct"), lower)
    with pytest.raises(CryptoError, match="not a fresh data-level"):
        EncryptedGroups.open(framing.pack("ckks-groups", header,
                                          [_sealio.dump(lower)] + blobs[1:]),
                             public, N_ROWS, 64)


def test_reply_opened_only_by_the_key_that_asked(keys, public, request_blob, data):
    reply = _reply(public, request_blob, data["bits"], np.zeros((2, N_GROUPS), np.int64))
    with pytest.raises(CryptoError, match="key_id mismatch"):
        constant_terms(CKKSKeyPair.generate(), reply, 2, 3)
    with pytest.raises(CryptoError, match="n_columns mismatch"):
        constant_terms(keys, reply, 1, 3)


def test_bad_inputs_rejected(keys, public, request_blob, data):
    with pytest.raises(CryptoError, match="group ids"):
        encrypt_groups(keys, np.array([0, N_GROUPS]), N_GROUPS)
    with pytest.raises(CryptoError, match="1-D int"):
        encrypt_groups(keys, np.array([0.5]), N_GROUPS)
    groups = EncryptedGroups.open(request_blob, public, N_ROWS, 64)
    with pytest.raises(CryptoError, match="0/1"):
        product_sums(groups, np.full((1, N_ROWS), 2))
    with pytest.raises(CryptoError, match="0/1"):
        product_sums(groups, data["bits"][:, :-1])
    sums = product_sums(groups, data["bits"])
    with pytest.raises(CryptoError, match="constants must be"):
        masked_counts(public, sums, [[0, 0, 0]])


def test_parameters_refused_below_security_or_without_room():
    with pytest.raises(CryptoError, match="128-bit bound"):
        CKKSParams(coeff_mod_bit_sizes=(60, 60, 60, 60))
    with pytest.raises(CryptoError, match="does not drown"):
        CKKSParams(flood_bits=60)
    with pytest.raises(CryptoError, match="quarter of a unit"):
        CKKSParams(unit_bits=70)
    with pytest.raises(CryptoError, match="no 25-bit digit"):
        CKKSParams(coeff_mod_bit_sizes=(60, 40, 38), unit_bits=79)


def test_load_missing_key_file(tmp_path):
    with pytest.raises(CryptoError, match="cannot read"):
        CKKSKeyPair.load(tmp_path / "absent.key")


@pytest.mark.slow
def test_counts_exact_at_a_million_rows(keys, public):
    rng = np.random.default_rng(11)
    n, n_groups = 1_000_000, 24
    group, bits = rng.integers(0, n_groups, n), rng.integers(0, 2, (1, n)).astype(np.int8)
    groups = EncryptedGroups.open(encrypt_groups(keys, group, n_groups), public, n, 64)
    layout = groups.layout
    reply = masked_counts(public, product_sums(groups, bits),
                          [[0] * layout.n_polys])
    truth = np.zeros(n_groups, np.int64)
    np.add.at(truth, group, bits[0])
    terms = constant_terms(keys, reply, 1, layout.n_polys)
    np.testing.assert_array_equal(decode_counts(layout, terms, data_modulus(keys)[1])[0], truth)


def test_pns_names_the_bank_whose_reply_does_not_open(keys, public, request_blob, data,
                                                      tmp_path):
    """A reply under another key (or cut short) is pinned on its bank, so the PNS can retry
    without it instead of failing the whole sum."""
    from clients.backends import PNS_KEY_FILE, BadReply, EncryptedBackend

    keys.save(tmp_path / PNS_KEY_FILE)
    good = _reply(public, request_blob, data["bits"], np.zeros((2, N_GROUPS), np.int64))
    backend = EncryptedBackend()
    counts = backend.counts(tmp_path, {"bank01": good}, N_GROUPS, 2)
    np.testing.assert_array_equal(counts, _truth(data).T)
    for bad in (good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1])):
        with pytest.raises(BadReply) as info:
            backend.counts(tmp_path, {"bank01": good, "bank02": bad}, N_GROUPS, 2)
        assert info.value.bank == "bank02" and str(info.value).startswith("bank02: ")


def test_a_bank_with_no_status_bit_in_a_chunk_or_column_still_answers(keys, public,
                                                                      request_blob, data):
    """A chunk (or a whole column) of zero bits is a product SEAL refuses; the counts must
    still come out exact (zero where no bit is set)."""
    bits = data["bits"].copy()
    bits[0, 8192:16384] = 0  # one chunk with no bit set
    bits[1] = 0  # a column with no bit set at all
    noise = np.zeros((2, N_GROUPS), np.int64)
    reply = _reply(public, request_blob, bits, noise)
    layout = DigitLayout(N_GROUPS, keys.params)
    counts = decode_counts(layout, constant_terms(keys, reply, 2, layout.n_polys),
                           data_modulus(keys)[1])
    np.testing.assert_array_equal(counts, _truth({**data, "bits": bits}))
    assert not counts[1].any()
