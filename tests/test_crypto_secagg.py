"""Secure aggregation masks modulo Q: they cancel in the sum, hide a single input, and
are fresh for every round and participant list."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

from crypto.channel import E2EIdentity
from crypto.secagg import SecAggParticipant
from federation.errors import ProtocolError

PARTIES = [f"bank{i:02d}" for i in range(1, 6)]
MODULUS = (1 << 179) - 1  # any modulus; the protocol uses the CKKS data modulus Q


@pytest.fixture(scope="module")
def members() -> dict[str, SecAggParticipant]:
    # Fixed keys make the masks, and so the uniformity tests below, deterministic.
    return {p: SecAggParticipant(p, E2EIdentity(X25519PrivateKey.from_private_bytes(
        bytes([i + 1]) * 32))) for i, p in enumerate(PARTIES)}


def _publics(members) -> dict[str, bytes]:
    return {p: m.identity.public_bytes() for p, m in members.items()}


def _masks(members, participants, tag, n=2000) -> dict[str, list[int]]:
    publics = _publics(members)
    return {p: members[p].masks(participants, tag, publics, n, MODULUS) for p in participants}


def test_masks_of_all_participants_cancel(members) -> None:
    rng = np.random.default_rng(0)
    values = {p: [int(v) for v in rng.integers(0, 10**6, 2000)] for p in PARTIES}
    masks = _masks(members, PARTIES, "r1")
    sums = [sum((values[p][i] + masks[p][i]) for p in PARTIES) % MODULUS for i in range(2000)]
    assert sums == [sum(values[p][i] for p in PARTIES) for i in range(2000)]


def test_single_masked_input_is_uniform(members) -> None:
    """A masked input looks the same whatever it hides: uniform modulo the modulus."""
    masks = _masks(members, PARTIES, "r1")["bank03"]
    for offset in (0, MODULUS // 3):
        top = np.array([((m + offset) % MODULUS) / MODULUS for m in masks])
        assert stats.kstest(top, "uniform").pvalue > 1e-4


def test_masks_are_fresh_per_round_and_participant_list(members) -> None:
    first = _masks(members, PARTIES, "r1")["bank01"]
    again = _masks(members, PARTIES, "r1")["bank01"]
    assert first == again  # the same round gives the same masks (they are derived)
    other_round = _masks(members, PARTIES, "r2")["bank01"]
    survivors = [p for p in PARTIES if p != "bank04"]
    retry = _masks(members, survivors, "r1")["bank01"]
    for other in (other_round, retry):
        assert np.mean([a == b for a, b in zip(first, other, strict=True)]) == 0.0
    # The survivors' masks cancel among themselves.
    masks = _masks(members, survivors, "r1-retry", n=10)
    assert [sum(masks[p][i] for p in survivors) % MODULUS for i in range(10)] == [0] * 10


def test_bad_participant_lists_rejected(members) -> None:
    publics = _publics(members)
    with pytest.raises(ProtocolError, match="not a participant"):
        members["bank01"].masks(PARTIES[1:], "r1", publics, 3, MODULUS)
    with pytest.raises(ProtocolError, match="distinct participants"):
        members["bank01"].masks(["bank01", "bank01"], "r1", publics, 3, MODULUS)
    with pytest.raises(ProtocolError, match="no public key for bank02"):
        members["bank01"].masks(PARTIES, "r1", {"bank03": publics["bank03"]}, 3, MODULUS)
