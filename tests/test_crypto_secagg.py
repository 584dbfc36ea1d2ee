"""Secure aggregation: exact sums, hiding of single inputs, drop-out abort and re-run."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

from crypto.channel import E2EIdentity
from crypto.secagg import SecAggParticipant, aggregate, decode_fixed, encode_fixed
from federation.errors import CryptoError, ProtocolError

PARTIES = [f"bank{i:02d}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def members() -> dict[str, SecAggParticipant]:
    # Fixed keys make the masks, and so the uniformity tests below, deterministic.
    return {p: SecAggParticipant(p, E2EIdentity(X25519PrivateKey.from_private_bytes(
        bytes([i + 1]) * 32))) for i, p in enumerate(PARTIES)}


def _publics(members) -> dict[str, bytes]:
    return {p: m.identity.public_bytes() for p, m in members.items()}


def _inputs(members, vectors, participants, tag="r1") -> dict[str, bytes]:
    publics = _publics(members)
    return {p: members[p].masked_input(vectors[p], participants, tag, publics)
            for p in participants}


def test_sum_exact_int64(members) -> None:
    rng = np.random.default_rng(0)
    vectors = {p: rng.integers(-(2**40), 2**40, 1000) for p in PARTIES}
    total = aggregate(_inputs(members, vectors, PARTIES), PARTIES, "r1")
    np.testing.assert_array_equal(total.view(np.int64), sum(vectors.values()))


def test_fixed_point_round_trip(members) -> None:
    rng = np.random.default_rng(1)
    reals = {p: rng.normal(size=200) for p in PARTIES}
    vectors = {p: encode_fixed(v, 20) for p, v in reals.items()}
    total = decode_fixed(aggregate(_inputs(members, vectors, PARTIES), PARTIES), 20)
    assert np.abs(total - sum(reals.values())).max() <= len(PARTIES) * 2.0**-21


def test_single_input_hides_the_vector(members) -> None:
    """Without the pairwise keys a masked input is uniform: it carries nothing about x."""
    zeros = {p: np.zeros(20000, np.int64) for p in PARTIES}
    ones = {p: np.full(20000, 2**62, np.int64) for p in PARTIES}
    sent_zero = np.frombuffer(_inputs(members, zeros, PARTIES)["bank03"][-8 * 20000 - 32:-32],
                              np.uint64)
    sent_one = np.frombuffer(_inputs(members, ones, PARTIES, "r2")["bank03"][-8 * 20000 - 32:-32],
                             np.uint64)
    for sent in (sent_zero, sent_one):
        # Top 16 bits of each word uniform on [0, 65536): KS against the uniform law.
        top = (sent >> np.uint64(48)).astype(np.float64) / 65536.0
        assert stats.kstest(top, "uniform").pvalue > 1e-4
    # Both inputs look alike: a two-sample KS test cannot tell x = 0 from x = 2^62.
    assert stats.ks_2samp(sent_zero.astype(np.float64), sent_one.astype(np.float64)).pvalue > 1e-4
    # With every pairwise key, the masks come off and x reappears (the keys are what hides it).
    member, publics = members["bank03"], _publics(members)
    x = np.arange(50, dtype=np.int64)
    blob = member.masked_input(x, PARTIES, "r3", publics)
    others = {p: np.zeros(50, np.int64) for p in PARTIES if p != "bank03"}
    rest = {p: members[p].masked_input(others[p], PARTIES, "r3", publics) for p in others}
    np.testing.assert_array_equal(
        aggregate({**rest, "bank03": blob}, PARTIES, "r3").view(np.int64), x)


def test_dropout_aborts_naming_party_then_survivors_rerun(members) -> None:
    rng = np.random.default_rng(2)
    vectors = {p: rng.integers(0, 1000, 100) for p in PARTIES}
    inputs = _inputs(members, vectors, PARTIES)
    del inputs["bank04"]
    with pytest.raises(ProtocolError, match="no masked input from bank04; round aborted"):
        aggregate(inputs, PARTIES, "r1")
    survivors = [p for p in PARTIES if p != "bank04"]
    total = aggregate(_inputs(members, vectors, survivors, "r1-retry"), survivors, "r1-retry")
    np.testing.assert_array_equal(total.view(np.int64), sum(vectors[p] for p in survivors))


def test_mismatched_or_tampered_inputs_rejected(members) -> None:
    vectors = {p: np.arange(10, dtype=np.int64) for p in PARTIES}
    inputs = _inputs(members, vectors, PARTIES)
    with pytest.raises(CryptoError, match="round_tag mismatch"):
        aggregate(inputs, PARTIES, "r9")
    swapped = dict(inputs, bank01=inputs["bank02"])
    with pytest.raises(CryptoError, match="party mismatch"):
        aggregate(swapped, PARTIES)
    bad = bytearray(inputs["bank01"])
    bad[-40] ^= 1
    with pytest.raises(CryptoError, match="checksum"):
        aggregate(dict(inputs, bank01=bytes(bad)), PARTIES)
    with pytest.raises(ProtocolError, match="non-participants"):
        aggregate(dict(inputs, mallory=inputs["bank01"]), PARTIES)
    with pytest.raises(CryptoError, match="1-D int64"):
        members["bank01"].masked_input(np.zeros(3), PARTIES, "r1", _publics(members))
    with pytest.raises(ProtocolError, match="not a participant"):
        members["bank01"].masked_input(np.zeros(3, np.int64), PARTIES[1:], "r1",
                                       _publics(members))
    with pytest.raises(CryptoError, match="62 bits"):
        encode_fixed(np.array([1e30]))


def test_inputs_relayed_through_the_channel_are_authenticated(members) -> None:
    from crypto.channel import MessageHeader, open_sealed, seal

    receiver = E2EIdentity.generate()
    vectors = {p: np.arange(10, dtype=np.int64) for p in PARTIES}
    inputs = _inputs(members, vectors, PARTIES)
    headers = {p: MessageHeader("run", "noise", 0, p, "pns", "secagg_input") for p in PARTIES}
    relayed = {p: seal(members[p].identity, receiver.public_bytes(), inputs[p], headers[p])
               for p in PARTIES}
    opened = {p: open_sealed(receiver, members[p].identity.public_bytes(), relayed[p],
                             headers[p]) for p in PARTIES}
    assert np.array_equal(aggregate(opened, PARTIES, "r1").view(np.int64), 5 * vectors["bank01"])
    forged = bytearray(relayed["bank02"])
    forged[-20] ^= 0x08  # the coordinator flips a bit of a relayed input
    with pytest.raises(CryptoError, match="from bank02 in phase 'noise': authentication"):
        open_sealed(receiver, members["bank02"].identity.public_bytes(), bytes(forged),
                    headers["bank02"])
