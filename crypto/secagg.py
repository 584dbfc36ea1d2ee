"""Secure aggregation relayed through the coordinator (pairwise masking, one round).

Each party i adds to its ring-encoded vector x_i (uint64, arithmetic mod 2^64) the masks
PRG(k_ij) for every peer j > i and subtracts them for j < i, where k_ij comes from X25519 +
HKDF-SHA256 and the PRG is the ChaCha20 keystream. The masks cancel in the sum, so the
receiver learns sum_i x_i and each single input is uniformly distributed to anyone without
k_ij. Inputs travel through the coordinator sealed with `crypto.channel.seal`, which
authenticates them.

Drop-outs: the round aborts. `aggregate` raises a ProtocolError naming every missing party;
nobody's state is lost, and the survivors re-run with the reduced participant list. The
participant list and round tag enter the mask derivation, so the re-run's masks are fresh
and the aborted round's inputs combined with the new ones reveal nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from crypto import framing
from crypto.channel import E2EIdentity
from federation.errors import CryptoError, ProtocolError
from federation.transcript import PayloadClass

_SECAGG_INFO = b"pv4fad secure aggregation v1"
_KIND = "secagg-input"


def encode_fixed(values: np.ndarray, frac_bits: int = 16) -> np.ndarray:
    """Real values to the ring Z_2^64 (uint64) in two's-complement fixed point."""
    scaled = np.round(np.asarray(values, dtype=np.float64) * 2.0**frac_bits)
    if not np.all(np.isfinite(scaled)) or np.abs(scaled).max(initial=0) >= 2.0**62:
        raise CryptoError(f"encode_fixed: values do not fit 62 bits at {frac_bits} fraction bits")
    return scaled.astype(np.int64).view(np.uint64)


def decode_fixed(ring: np.ndarray, frac_bits: int = 16) -> np.ndarray:
    """Inverse of `encode_fixed` (also for sums, as long as they stay within 62 bits)."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**frac_bits


def _participants_digest(participants: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(participants).encode()).hexdigest()


def _check_participants(participants: Sequence[str]) -> list[str]:
    ordered = list(participants)
    if len(set(ordered)) != len(ordered) or len(ordered) < 2:
        raise ProtocolError(f"secure aggregation: need >= 2 distinct participants, got {ordered}")
    return sorted(ordered)


class SecAggParticipant:
    """One party of a secure aggregation; its X25519 identity is its long-term key."""

    payload_class = PayloadClass.SECRET_SHARE

    def __init__(self, party_id: str, identity: E2EIdentity) -> None:
        self.party_id = party_id
        self.identity = identity

    def _pair_mask(self, peer_public: bytes, round_tag: str, digest: str, n: int) -> np.ndarray:
        pair_key = self.identity.shared_key(peer_public, _SECAGG_INFO)
        round_key = hmac.new(pair_key, f"{round_tag}\x00{digest}".encode(), "sha256").digest()
        stream = Cipher(algorithms.ChaCha20(round_key, bytes(16)), mode=None).encryptor()
        return np.frombuffer(stream.update(bytes(8 * n)), dtype=np.uint64)

    def masked_input(
        self,
        vector: np.ndarray,
        participants: Sequence[str],
        round_tag: str,
        peer_publics: Mapping[str, bytes],
    ) -> bytes:
        """This party's masked vector (int64 or uint64, taken mod 2^64) as a framed payload."""
        ordered = _check_participants(participants)
        if self.party_id not in ordered:
            raise ProtocolError(
                f"secure aggregation {round_tag}: {self.party_id} is not a participant"
            )
        vector = np.asarray(vector)
        if vector.ndim != 1 or vector.dtype not in (np.int64, np.uint64):
            raise CryptoError(
                f"secure aggregation {round_tag}: input of {self.party_id} must be a 1-D int64 or "
                f"uint64 array, got shape {vector.shape} dtype {vector.dtype}"
            )
        digest = _participants_digest(ordered)
        masked = vector.view(np.uint64).copy()
        for peer in ordered:
            if peer == self.party_id:
                continue
            if peer not in peer_publics:
                raise ProtocolError(f"secure aggregation {round_tag}: no public key for {peer}")
            mask = self._pair_mask(peer_publics[peer], round_tag, digest, masked.size)
            if self.party_id < peer:
                masked += mask
            else:
                masked -= mask
        header = {"round_tag": round_tag, "party": self.party_id, "participants": ordered,
                  "length": int(masked.size)}
        return framing.pack(_KIND, header, [masked.tobytes()])


def aggregate(
    masked_inputs: Mapping[str, bytes],
    participants: Sequence[str],
    round_tag: str | None = None,
) -> np.ndarray:
    """Sum (uint64, mod 2^64) of all participants' inputs; aborts if any input is missing."""
    ordered = _check_participants(participants)
    missing = [p for p in ordered if p not in masked_inputs]
    if missing:
        survivors = [p for p in ordered if p in masked_inputs]
        raise ProtocolError(
            f"secure aggregation {round_tag or ''}: no masked input from {', '.join(missing)}; "
            f"round aborted, re-run with participants {survivors}"
        )
    extra = sorted(set(masked_inputs) - set(ordered))
    if extra:
        raise ProtocolError(f"secure aggregation: inputs from non-participants {extra}")
    total = np.zeros(0, dtype=np.uint64)
    tags = set()
    for party in ordered:
        header, blobs = framing.unpack(masked_inputs[party], _KIND)
        framing.expect(header, "party", party, f"{_KIND} of {party}")
        framing.expect(header, "participants", ordered, f"{_KIND} of {party}")
        if round_tag is not None:
            framing.expect(header, "round_tag", round_tag, f"{_KIND} of {party}")
        tags.add(header.get("round_tag"))
        if len(blobs) != 1 or len(blobs[0]) != 8 * int(header.get("length", -1)):
            raise CryptoError(f"{_KIND} of {party}: vector length does not match its header")
        vec = np.frombuffer(blobs[0], dtype=np.uint64)
        if party == ordered[0]:
            total = vec.copy()
        elif vec.size != total.size:
            raise CryptoError(f"{_KIND} of {party}: length {vec.size}, others {total.size}")
        else:
            total += vec
    if len(tags) != 1:
        raise CryptoError(f"secure aggregation: inputs from different rounds {sorted(tags)}")
    return total
