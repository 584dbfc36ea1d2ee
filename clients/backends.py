"""The two ways the protocol's private steps can be computed, behind one interface.

`EncryptedBackend` is the real protocol: CKKS under the bank's key, masks, secure
aggregation. `PlaintextBackend` runs the same pipeline with the cryptography switched off;
it exists only to measure what privacy costs, and its payloads are classed plaintext in the
ledger so that the privacy checks reject it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from federation import wire
from federation.transcript import PayloadClass

# Fixed-point scales: secure-aggregation inputs carry round(x * 2^8); per-row status
# evidence computed under CKKS carries round(e * 2^8): fewer fraction bits, stronger masks
# (docs/security.md: 2^-30 statistical distance per row).
FIXED_POINT_BITS = 8
ROW_FRAC_BITS = 8


class Backend(Protocol):
    status_class: PayloadClass
    table_class: PayloadClass
    share_class: PayloadClass
    rows_class: PayloadClass

    # bank side
    def bank_public(self, state: Path) -> bytes: ...
    def encrypt_status(self, state: Path, status: np.ndarray, n_categories: int) -> bytes: ...
    def decrypt_table(self, state: Path, blob: bytes) -> np.ndarray: ...
    def decrypt_rows(self, state: Path, blob: bytes) -> np.ndarray: ...

    # PNS side
    def masked_table(self, bank_public: bytes, status_blob: bytes, groups: np.ndarray,
                     n_groups: int) -> tuple[bytes, np.ndarray]: ...
    def masked_rows(self, bank_public: bytes, status_blob: bytes, weights: np.ndarray
                    ) -> tuple[bytes, np.ndarray]: ...


def backend_for(plaintext: bool) -> Backend:
    return PlaintextBackend() if plaintext else EncryptedBackend()


def secagg_round_tag(run_id: str, round: int) -> str:
    """Secure-aggregation masks are fresh for every run and every retry round."""
    return f"{run_id}/noise/{round}"


def to_ring(masked: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Masked int64 counts plus real noise, as fixed point in the ring Z_2^64.

    Stays in integer arithmetic: the masked counts are far wider than a float64 mantissa.
    """
    shifted = masked.astype(np.int64).view(np.uint64) << np.uint64(FIXED_POINT_BITS)
    return shifted + np.round(noise * (1 << FIXED_POINT_BITS)).astype(np.int64).view(np.uint64)


def from_ring(total: np.ndarray, mask_totals: np.ndarray) -> np.ndarray:
    """Remove the PNS's masks from a ring sum and return real values."""
    masks = mask_totals.astype(np.int64).view(np.uint64) << np.uint64(FIXED_POINT_BITS)
    return (total - masks).view(np.int64).astype(np.float64) / (1 << FIXED_POINT_BITS)


class EncryptedBackend:
    """CKKS (TenSEAL/SEAL) under the bank's own key; see crypto/ckks.py and docs/protocol.md."""

    status_class = PayloadClass.CIPHERTEXT
    table_class = PayloadClass.CIPHERTEXT
    share_class = PayloadClass.SECRET_SHARE
    rows_class = PayloadClass.CIPHERTEXT

    _KEY_FILE = "ckks_secret.bin"

    def _keys(self, state: Path) -> Any:
        from crypto.ckks import CKKSKeyPair

        path = state / self._KEY_FILE
        if path.exists():
            return CKKSKeyPair.load(path)
        keys = CKKSKeyPair.generate()
        keys.save(path)
        return keys

    def bank_public(self, state: Path) -> bytes:
        return self._keys(state).public_context_bytes()

    def encrypt_status(self, state: Path, status: np.ndarray, n_categories: int) -> bytes:
        from crypto.ckks import encrypt_onehot

        return encrypt_onehot(self._keys(state), status, n_categories).to_bytes()

    def decrypt_table(self, state: Path, blob: bytes) -> np.ndarray:
        from crypto.ckks import decrypt_slot_sums

        return decrypt_slot_sums(self._keys(state), blob)

    def decrypt_rows(self, state: Path, blob: bytes) -> np.ndarray:
        from crypto.ckks import decrypt_rows

        return decrypt_rows(self._keys(state), blob)

    @staticmethod
    def _columns(bank_public: bytes, status_blob: bytes) -> Any:
        from crypto.ckks import EncryptedColumns, PublicContext

        return EncryptedColumns.from_bytes(status_blob, PublicContext.from_bytes(bank_public))

    def masked_table(self, bank_public: bytes, status_blob: bytes, groups: np.ndarray,
                     n_groups: int) -> tuple[bytes, np.ndarray]:
        from crypto.ckks import grouped_sums

        masked = grouped_sums(self._columns(bank_public, status_blob), groups, n_groups)
        return masked.ciphertext_bytes(), masked.mask_totals

    def masked_rows(self, bank_public: bytes, status_blob: bytes, weights: np.ndarray
                    ) -> tuple[bytes, np.ndarray]:
        from crypto.ckks import rowwise_scores

        masked = rowwise_scores(self._columns(bank_public, status_blob), weights,
                                frac_bits=ROW_FRAC_BITS)
        return masked.ciphertext_bytes(), masked.mask_offsets


class PlaintextBackend:
    """Same pipeline, no cryptography: the bank's status travels in the clear."""

    status_class = PayloadClass.PLAINTEXT
    table_class = PayloadClass.PLAINTEXT
    share_class = PayloadClass.PLAINTEXT
    rows_class = PayloadClass.PLAINTEXT

    def bank_public(self, state: Path) -> bytes:
        return b""

    def encrypt_status(self, state: Path, status: np.ndarray, n_categories: int) -> bytes:
        return wire.pack({"status": status.astype(np.int8), "n_categories": n_categories})

    def decrypt_table(self, state: Path, blob: bytes) -> np.ndarray:
        return np.asarray(wire.unpack(blob)["table"], dtype=np.int64)

    def decrypt_rows(self, state: Path, blob: bytes) -> np.ndarray:
        return np.asarray(wire.unpack(blob)["rows"], dtype=np.int64)

    def masked_table(self, bank_public: bytes, status_blob: bytes, groups: np.ndarray,
                     n_groups: int) -> tuple[bytes, np.ndarray]:
        onehot = _onehot(status_blob)
        table = np.zeros((n_groups, onehot.shape[1]), dtype=np.int64)
        np.add.at(table, groups, onehot)
        return wire.pack({"table": table}), np.zeros_like(table)

    def masked_rows(self, bank_public: bytes, status_blob: bytes, weights: np.ndarray
                    ) -> tuple[bytes, np.ndarray]:
        scores = (_onehot(status_blob) * weights).sum(axis=1)
        fixed = np.round(scores * 2.0**ROW_FRAC_BITS).astype(np.int64)
        return wire.pack({"rows": fixed}), np.zeros(len(fixed), dtype=np.int64)


def unmask_rows(released: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Scores from the bank's released fixed-point values and the PNS's mask offsets."""
    return (released.astype(np.int64) - offsets).astype(np.float64) / 2.0**ROW_FRAC_BITS


def _onehot(status_blob: bytes) -> np.ndarray:
    fields = wire.unpack(status_blob)
    status = fields["status"].astype(np.int64)
    onehot = np.zeros((len(status), int(fields["n_categories"])), dtype=np.int64)
    onehot[np.arange(len(status)), status] = 1
    return onehot
