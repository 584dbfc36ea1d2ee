"""The two ways the training counts can be computed, behind one interface.

`EncryptedBackend` is the real protocol (crypto/ckks.py): the PNS encrypts its rows' groups
under its own CKKS key, fresh for every training stage; the bank evaluates with its status
bits and masks; the PNS reads one coefficient per reply and sums over banks, where the
secure-aggregation masks cancel. `PlaintextBackend` runs the same pipeline with the
cryptography switched off; it exists only to measure what privacy costs, and its payloads
are classed plaintext in the ledger so that the privacy checks reject it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from federation import wire
from federation.errors import ProtocolError, Pv4fadError
from federation.transcript import PayloadClass

PNS_KEY_FILE = "ckks_secret.bin"


class BadReply(ProtocolError):
    """One bank's counts reply does not open: that bank is left out of a retry."""

    def __init__(self, bank: str, reason: str) -> None:
        super().__init__(f"{bank}: {reason}")
        self.bank, self.reason = bank, reason


class Backend(Protocol):
    groups_class: PayloadClass
    counts_class: PayloadClass

    # PNS side
    def new_pns_key(self, state: Path) -> bytes: ...
    def encrypt_groups(self, state: Path, groups: np.ndarray, n_groups: int) -> bytes: ...
    def counts(self, state: Path, replies: Mapping[str, bytes], n_groups: int, n_columns: int
               ) -> np.ndarray: ...

    # bank side
    def open_request(self, pns_public: bytes, request: bytes, n_rows: int, max_groups: int
                     ) -> Any: ...
    def product_sums(self, opened: Any, bits: np.ndarray) -> tuple[bytes, int]: ...
    def mask_space(self, pns_public: bytes, n_groups: int, n_columns: int
                   ) -> tuple[int, int]: ...
    def reply(self, pns_public: bytes, sums: bytes, noise: np.ndarray,
              masks: Sequence[int]) -> bytes: ...


def backend_for(plaintext: bool) -> Backend:
    return PlaintextBackend() if plaintext else EncryptedBackend()


def secagg_round_tag(run_id: str, round: int) -> str:
    """Secure-aggregation masks are fresh for every run and every retry round."""
    return f"{run_id}/noise/{round}"


class EncryptedBackend:
    """CKKS under the PNS's own key; see crypto/ckks.py and docs/protocol.md."""

    groups_class = PayloadClass.CIPHERTEXT
    counts_class = PayloadClass.CIPHERTEXT

    def new_pns_key(self, state: Path) -> bytes:
        """A fresh key pair for this training stage; returns the public context."""
        from crypto.ckks import CKKSKeyPair

        keys = CKKSKeyPair.generate()
        keys.save(state / PNS_KEY_FILE)
        return keys.public_context_bytes()

    def _keys(self, state: Path) -> Any:
        from crypto.ckks import CKKSKeyPair

        path = state / PNS_KEY_FILE
        if not path.exists():
            raise ProtocolError(f"no CKKS key at {path}: run the training setup first")
        return CKKSKeyPair.load(path)

    def encrypt_groups(self, state: Path, groups: np.ndarray, n_groups: int) -> bytes:
        from crypto.ckks import encrypt_groups

        return encrypt_groups(self._keys(state), groups, n_groups)

    def counts(self, state: Path, replies: Mapping[str, bytes], n_groups: int, n_columns: int
               ) -> np.ndarray:
        """(n_groups, n_columns) sums over the banks' replies: noisy counts. A reply that
        does not decrypt raises BadReply naming its bank."""
        from crypto.ckks import DigitLayout, constant_terms, data_modulus, decode_counts

        keys = self._keys(state)
        layout = DigitLayout(n_groups, keys.params)
        _, modulus = data_modulus(keys)
        totals = [[0] * layout.n_polys for _ in range(n_columns)]
        for bank, reply in replies.items():
            try:
                terms = constant_terms(keys, reply, n_columns, layout.n_polys)
            except Pv4fadError as exc:
                raise BadReply(bank, str(exc)) from exc
            totals = [[(t + v) % modulus for t, v in zip(tr, vr, strict=True)]
                      for tr, vr in zip(totals, terms, strict=True)]
        return decode_counts(layout, totals, modulus).T

    @staticmethod
    def _context(pns_public: bytes) -> Any:
        from crypto.ckks import PublicContext

        return PublicContext.from_bytes(pns_public)

    def open_request(self, pns_public: bytes, request: bytes, n_rows: int, max_groups: int
                     ) -> Any:
        """The PNS's encrypted groups, refused unless they fit what the bank expects."""
        from crypto.ckks import EncryptedGroups

        return EncryptedGroups.open(request, self._context(pns_public), n_rows, max_groups)

    def product_sums(self, opened: Any, bits: np.ndarray) -> tuple[bytes, int]:
        """The bank's encrypted counts before noise and masks, and the number of groups."""
        from crypto.ckks import product_sums

        return product_sums(opened, bits), opened.layout.n_groups

    def mask_space(self, pns_public: bytes, n_groups: int, n_columns: int
                   ) -> tuple[int, int]:
        """How many secure-aggregation masks a reply carries, and their modulus (Q)."""
        from crypto.ckks import DigitLayout, data_modulus

        context = self._context(pns_public)
        _, modulus = data_modulus(context)
        return n_columns * DigitLayout(n_groups, context.params).n_polys, modulus

    def reply(self, pns_public: bytes, sums: bytes, noise: np.ndarray,
              masks: Sequence[int]) -> bytes:
        """noise: (n_groups, n_columns) integers; masks: one per reply ciphertext."""
        from crypto.ckks import DigitLayout, digit_constants, masked_counts

        context = self._context(pns_public)
        layout = DigitLayout(noise.shape[0], context.params)
        constants = [[c + masks[col * layout.n_polys + p] for p, c in
                      enumerate(digit_constants(layout, noise[:, col]))]
                     for col in range(noise.shape[1])]
        return masked_counts(context, sums, constants)


class PlaintextBackend:
    """Same pipeline, no cryptography: groups and counts travel in the clear."""

    groups_class = PayloadClass.PLAINTEXT
    counts_class = PayloadClass.PLAINTEXT

    def new_pns_key(self, state: Path) -> bytes:
        return b""

    def encrypt_groups(self, state: Path, groups: np.ndarray, n_groups: int) -> bytes:
        return wire.pack({"groups": groups.astype(np.int32), "n_groups": n_groups})

    def counts(self, state: Path, replies: Mapping[str, bytes], n_groups: int, n_columns: int
               ) -> np.ndarray:
        total = np.zeros((n_groups, n_columns), dtype=np.int64)
        for bank, reply in replies.items():
            try:
                counts = np.asarray(wire.unpack(reply, what="plaintext counts")["counts"],
                                    dtype=np.int64)
            except (Pv4fadError, KeyError, ValueError, TypeError) as exc:
                raise BadReply(bank, f"plaintext counts: {exc}") from exc
            if counts.shape != total.shape:
                raise BadReply(bank, f"plaintext counts: shape {counts.shape}, "
                                     f"expected {total.shape}")
            total += counts
        return total

    def open_request(self, pns_public: bytes, request: bytes, n_rows: int, max_groups: int
                     ) -> Any:
        fields = wire.unpack(request, what="plaintext groups")
        groups, n_groups = np.asarray(fields["groups"], dtype=np.int64), int(fields["n_groups"])
        if groups.shape != (n_rows,) or not 1 <= n_groups <= max_groups or (
                groups.size and not 0 <= groups.min() <= groups.max() < n_groups):
            raise ProtocolError(f"plaintext groups: {groups.shape} rows, {n_groups} groups")
        return groups, n_groups

    def product_sums(self, opened: Any, bits: np.ndarray) -> tuple[bytes, int]:
        groups, n_groups = opened
        counts = np.zeros((n_groups, bits.shape[0]), dtype=np.int64)
        for col, column in enumerate(bits):
            np.add.at(counts[:, col], groups, column)
        return wire.pack({"counts": counts}), n_groups

    def mask_space(self, pns_public: bytes, n_groups: int, n_columns: int
                   ) -> tuple[int, int]:
        return 0, 1

    def reply(self, pns_public: bytes, sums: bytes, noise: np.ndarray,
              masks: Sequence[int]) -> bytes:
        return wire.pack({"counts": np.asarray(wire.unpack(sums)["counts"]) + noise})
