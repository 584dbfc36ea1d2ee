"""CKKS packing, masked grouped sums and row scores: correctness and every error case."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal

from crypto import _sealio, framing
from crypto.ckks import (
    CKKSKeyPair,
    CKKSParams,
    EncryptedColumns,
    PublicContext,
    decrypt_rows,
    decrypt_slot_sums,
    encrypt_onehot,
    grouped_sums,
    rowwise_scores,
)
from federation.errors import CryptoError
from federation.transcript import PayloadClass

N_ROWS, N_CAT, N_GROUPS = 12500, 4, 7  # 2 chunks of 2 x 4096 rows; the last ends mid-imaginary


@pytest.fixture(scope="module")
def keys() -> CKKSKeyPair:
    return CKKSKeyPair.generate()


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "status": rng.integers(0, N_CAT, N_ROWS),
        "group": rng.integers(0, N_GROUPS, N_ROWS),
        "weights": rng.integers(0, 5, N_ROWS),
        "table": rng.uniform(-1, 1, (N_ROWS, N_CAT)),
    }


@pytest.fixture(scope="module")
def payload(keys: CKKSKeyPair, data: dict[str, np.ndarray]) -> bytes:
    return encrypt_onehot(keys, data["status"], N_CAT).to_bytes()


@pytest.fixture(scope="module")
def opened(keys: CKKSKeyPair, payload: bytes) -> EncryptedColumns:
    public = PublicContext.from_bytes(keys.public_context_bytes())
    return EncryptedColumns.from_bytes(payload, public)


def _truth(group: np.ndarray, status: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out = np.zeros((N_GROUPS, N_CAT), np.int64)
    np.add.at(out, (group, status), weights)
    return out


def test_default_params_meet_128_bit_bound() -> None:
    params = CKKSParams()
    bound = seal.CoeffModulus.MaxBitCount(params.poly_modulus_degree, seal.SEC_LEVEL_TYPE.TC128)
    assert sum(params.coeff_mod_bit_sizes) <= bound


def test_grouped_counts_exact(keys, data, opened) -> None:
    masked = grouped_sums(opened, data["group"], N_GROUPS)
    assert masked.payload_class is PayloadClass.MASKED
    reply = decrypt_slot_sums(keys, masked.ciphertext_bytes())
    truth = _truth(data["group"], data["status"], np.ones(N_ROWS, np.int64))
    np.testing.assert_array_equal(reply - masked.mask_totals, truth)
    # The bank's view is the masked table, far from the counts.
    assert np.all(np.abs(reply[:, 1:] - truth[:, 1:]) > 2**30)


def test_grouped_weighted_sums_exact(keys, data, opened) -> None:
    masked = grouped_sums(opened, data["group"], N_GROUPS, weights=data["weights"])
    reply = decrypt_slot_sums(keys, masked.ciphertext_bytes())
    truth = _truth(data["group"], data["status"], data["weights"])
    np.testing.assert_array_equal(reply - masked.mask_totals, truth)


def test_empty_group_still_masked(keys, data, opened) -> None:
    group = np.where(data["group"] == 3, 0, data["group"])  # group 3 has no rows
    masked = grouped_sums(opened, group, N_GROUPS)
    reply = decrypt_slot_sums(keys, masked.ciphertext_bytes())
    counts = reply - masked.mask_totals
    assert counts[3].sum() == 0 and np.all(np.abs(reply[3, 1:]) > 2**30)


def test_rowwise_scores_match_plaintext(keys, data, opened) -> None:
    masked = rowwise_scores(opened, data["table"], frac_bits=16)
    reply = decrypt_rows(keys, masked.ciphertext_bytes())
    scores = masked.unmask(reply)
    expected = data["table"][np.arange(N_ROWS), data["status"]]
    assert np.abs(scores - expected).max() <= 2.0**-16


def test_save_load_roundtrip(keys, data, opened, tmp_path) -> None:
    keys.save(tmp_path / "bank" / "ckks.key")
    again = CKKSKeyPair.load(tmp_path / "bank" / "ckks.key")
    assert again.key_id == keys.key_id
    masked = grouped_sums(opened, data["group"], N_GROUPS)
    reply = decrypt_slot_sums(again, masked.ciphertext_bytes())
    assert np.array_equal(reply - masked.mask_totals,
                          _truth(data["group"], data["status"], np.ones(N_ROWS, np.int64)))


def test_public_context_cannot_decrypt(keys, data, opened) -> None:
    public_bytes = keys.public_context_bytes()
    public = PublicContext.from_bytes(public_bytes)
    assert not hasattr(public, "decryptor") and len(public_bytes) < 600_000
    masked = grouped_sums(opened, data["group"], N_GROUPS)
    with pytest.raises(CryptoError, match="public context cannot decrypt"):
        decrypt_slot_sums(public, masked.ciphertext_bytes())  # type: ignore[arg-type]
    # Its only key material is the public key: it does not load as a SEAL secret key.
    _header, blobs = framing.unpack(public_bytes, "ckks-public-context")
    assert len(blobs) == 1
    with pytest.raises(CryptoError):
        _sealio.load_into(seal.SecretKey(), public.suite.context, blobs[0], "secret key")


def test_other_bank_context_rejected(keys, payload) -> None:
    other = CKKSKeyPair.generate()
    with pytest.raises(CryptoError, match="key_id mismatch"):
        EncryptedColumns.from_bytes(payload, other.public_context())


def test_wrong_key_cannot_decrypt_reply(keys, data, opened) -> None:
    masked = grouped_sums(opened, data["group"], N_GROUPS)
    with pytest.raises(CryptoError, match="key_id mismatch"):
        decrypt_slot_sums(CKKSKeyPair.generate(), masked.ciphertext_bytes())


def test_mismatched_parameters_rejected(keys, payload) -> None:
    other = CKKSKeyPair.generate(CKKSParams(mask_bits=40))
    with pytest.raises(CryptoError, match="param_id mismatch"):
        EncryptedColumns.from_bytes(payload, other.public_context())


@pytest.mark.parametrize("cut", [1, 100, 50_000])
def test_truncated_bytes_rejected(keys, payload, cut) -> None:
    with pytest.raises(CryptoError, match="checksum|too short"):
        EncryptedColumns.from_bytes(payload[:-cut], keys.public_context())


def test_corrupted_bytes_rejected(keys, payload) -> None:
    bad = bytearray(payload)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(CryptoError, match="checksum"):
        EncryptedColumns.from_bytes(bytes(bad), keys.public_context())


def test_wrong_payload_kind_rejected(keys) -> None:
    with pytest.raises(CryptoError, match="expected a ckks-onehot payload"):
        EncryptedColumns.from_bytes(keys.public_context_bytes(), keys.public_context())


def test_garbage_ciphertext_inside_valid_frame_rejected(keys) -> None:
    with pytest.raises(CryptoError, match="not a valid SEAL object"):
        _sealio.load_into(seal.Ciphertext(), keys.suite.context, b"\x00" * 64, "ciphertext")


def test_insecure_parameters_rejected() -> None:
    with pytest.raises(CryptoError, match="128-bit bound"):
        CKKSParams(coeff_mod_bit_sizes=(60, 60, 60, 60))
    with pytest.raises(CryptoError, match="data level"):
        CKKSParams(coeff_mod_bit_sizes=(60, 60, 38), encrypt_scale_bits=60)


def test_bad_inputs_rejected(keys, data, opened) -> None:
    with pytest.raises(CryptoError, match="status values"):
        encrypt_onehot(keys, np.array([0, 4]), N_CAT)
    with pytest.raises(CryptoError, match="1-D int"):
        encrypt_onehot(keys, np.array([0.5]), N_CAT)
    with pytest.raises(CryptoError, match="group ids"):
        grouped_sums(opened, np.full(N_ROWS, N_GROUPS), N_GROUPS)
    with pytest.raises(CryptoError, match="expected shape"):
        grouped_sums(opened, data["group"][:-1], N_GROUPS)
    with pytest.raises(CryptoError, match="integers"):
        grouped_sums(opened, data["group"], N_GROUPS, weights=np.full(N_ROWS, 0.5))
    with pytest.raises(CryptoError, match="weights too large"):
        grouped_sums(opened, data["group"], N_GROUPS, weights=np.full(N_ROWS, 2**40))
    with pytest.raises(CryptoError, match="weights too large"):
        rowwise_scores(opened, np.full((N_ROWS, N_CAT), 2.0**30))
    with pytest.raises(CryptoError, match="weights must be finite"):
        rowwise_scores(opened, np.zeros((N_ROWS, N_CAT - 1)))
    unopened = encrypt_onehot(keys, data["status"][:10], N_CAT)
    with pytest.raises(CryptoError, match="from_bytes first"):
        grouped_sums(unopened, np.zeros(10, np.int64), 1)


def test_load_missing_key_file(tmp_path) -> None:
    with pytest.raises(CryptoError, match="cannot read"):
        CKKSKeyPair.load(tmp_path / "absent.key")


@pytest.mark.slow
def test_grouped_counts_exact_at_a_million_rows(keys) -> None:
    rng = np.random.default_rng(11)
    n, n_groups = 1_000_000, 30
    status, group = rng.integers(0, N_CAT, n), rng.integers(0, n_groups, n)
    public = PublicContext.from_bytes(keys.public_context_bytes())
    opened = EncryptedColumns.from_bytes(encrypt_onehot(keys, status, N_CAT).to_bytes(), public)
    masked = grouped_sums(opened, group, n_groups)
    truth = np.zeros((n_groups, N_CAT), np.int64)
    np.add.at(truth, (group, status), 1)
    reply = decrypt_slot_sums(keys, masked.ciphertext_bytes())
    np.testing.assert_array_equal(reply - masked.mask_totals, truth)
