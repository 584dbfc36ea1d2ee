"""Secure aggregation by pairwise masks modulo a public modulus (one round, abort on drop-out).

Each party i adds to its inputs (integers modulo M) the masks PRG(k_ij) for every peer
j > i and subtracts them for j < i, where k_ij comes from X25519 + HKDF-SHA256 and the PRG
is a ChaCha20 keystream keyed per round by HMAC-SHA256(k_ij, round tag || digest of the
participant list). The masks cancel in the sum over all participants, so the receiver
learns only that sum; each party's masked input is uniform modulo M to anyone lacking one
of its pairwise keys. In the protocol the masks ride inside the joint-count replies
(crypto/ckks.py: added to a constant coefficient modulo the CKKS data modulus Q); the
replies travel sealed by `crypto.channel`, which authenticates them.

Drop-outs: the sum cannot be unmasked without every participant. Survivors re-run with
the reduced participant list; the list and the round tag enter the mask derivation, so the
re-run's masks are independent of the aborted round's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from crypto.channel import E2EIdentity
from federation.errors import ProtocolError
from federation.transcript import PayloadClass

_SECAGG_INFO = b"pv4fad secure aggregation v2"
_EXTRA_BITS = 128  # each mask reduces modulus-bits + 128 random bits: bias below 2^-128


def _participants_digest(participants: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(participants).encode()).hexdigest()


def check_participants(participants: Sequence[str]) -> list[str]:
    """The sorted participant list; refuses duplicates and lists of fewer than 2."""
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

    def _pair_masks(self, peer_public: bytes, round_tag: str, digest: str, n: int,
                    modulus: int) -> list[int]:
        pair_key = self.identity.shared_key(peer_public, _SECAGG_INFO)
        round_key = hmac.new(pair_key, f"{round_tag}\x00{digest}".encode(), "sha256").digest()
        stream = Cipher(algorithms.ChaCha20(round_key, bytes(16)), mode=None).encryptor()
        width = (modulus.bit_length() + _EXTRA_BITS + 7) // 8
        raw = stream.update(bytes(width * n))
        return [int.from_bytes(raw[i * width:(i + 1) * width], "little") % modulus
                for i in range(n)]

    def masks(self, participants: Sequence[str], round_tag: str,
              peer_publics: Mapping[str, bytes], n: int, modulus: int) -> list[int]:
        """This party's `n` masks modulo `modulus`: sum_{j > i} PRG(k_ij) - sum_{j < i}
        PRG(k_ij). The masks of all participants of one round sum to zero."""
        ordered = check_participants(participants)
        if self.party_id not in ordered:
            raise ProtocolError(
                f"secure aggregation {round_tag}: {self.party_id} is not a participant"
            )
        digest = _participants_digest(ordered)
        total = [0] * n
        for peer in ordered:
            if peer == self.party_id:
                continue
            if peer not in peer_publics:
                raise ProtocolError(f"secure aggregation {round_tag}: no public key for {peer}")
            sign = 1 if self.party_id < peer else -1
            pair = self._pair_masks(peer_publics[peer], round_tag, digest, n, modulus)
            total = [(t + sign * m) % modulus for t, m in zip(total, pair, strict=True)]
        return total
