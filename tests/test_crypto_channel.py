"""End-to-end channel: round trip, and every way a relayed payload must be refused."""

from __future__ import annotations

import dataclasses

import pytest

from crypto.channel import E2EIdentity, MessageHeader, ReplayGuard, open_sealed, seal
from federation.errors import CryptoError


@pytest.fixture(scope="module")
def parties() -> dict[str, E2EIdentity]:
    return {name: E2EIdentity.generate() for name in ("pns", "bank01", "bank02")}


HEADER = MessageHeader("run-1", "linkage", 0, "pns", "bank01", "linkage_request")


def _sealed(parties, payload: bytes = b"secret rows", header: MessageHeader = HEADER) -> bytes:
    return seal(parties["pns"], parties["bank01"].public_bytes(), payload, header)


def test_round_trip(parties) -> None:
    blob = _sealed(parties)
    assert b"secret rows" not in blob
    assert open_sealed(parties["bank01"], parties["pns"].public_bytes(), blob, HEADER) == (
        b"secret rows"
    )


@pytest.mark.parametrize(
    "field,value",
    [("run_id", "run-2"), ("phase", "training"), ("round", 1), ("receiver", "bank02"),
     ("message_type", "other"), ("sender", "bank02")],
)
def test_replay_into_other_context_rejected(parties, field, value) -> None:
    blob = _sealed(parties)
    expected = dataclasses.replace(HEADER, **{field: value})
    with pytest.raises(CryptoError, match=f"phase .*header mismatch: {field}="):
        open_sealed(parties["bank01"], parties["pns"].public_bytes(), blob, expected)


def test_rewritten_header_fails_authentication(parties) -> None:
    blob = _sealed(parties)
    forged = blob.replace(b'"round":0', b'"round":7')
    expected = dataclasses.replace(HEADER, round=7)
    with pytest.raises(CryptoError, match="message from pns in phase 'linkage': authentication"):
        open_sealed(parties["bank01"], parties["pns"].public_bytes(), forged, expected)


def test_tampered_body_rejected(parties) -> None:
    blob = bytearray(_sealed(parties))
    blob[-3] ^= 0x40
    with pytest.raises(CryptoError, match="authentication failed"):
        open_sealed(parties["bank01"], parties["pns"].public_bytes(), bytes(blob), HEADER)


def test_wrong_key_rejected(parties) -> None:
    blob = _sealed(parties)
    with pytest.raises(CryptoError, match="authentication failed"):
        open_sealed(parties["bank02"], parties["pns"].public_bytes(), blob, HEADER)
    with pytest.raises(CryptoError, match="authentication failed"):
        open_sealed(parties["bank01"], parties["bank02"].public_bytes(), blob, HEADER)


def test_truncated_and_garbage_rejected(parties) -> None:
    with pytest.raises(CryptoError, match="truncated|too short"):
        open_sealed(parties["bank01"], parties["pns"].public_bytes(), _sealed(parties)[:40], HEADER)
    with pytest.raises(CryptoError, match="unknown format"):
        open_sealed(parties["bank01"], parties["pns"].public_bytes(), b"\x07garbage", HEADER)
    with pytest.raises(CryptoError, match="X25519 public key"):
        seal(parties["pns"], b"short", b"x", HEADER)


def test_replay_guard_persists(parties, tmp_path) -> None:
    blob = _sealed(parties)
    guard = ReplayGuard(tmp_path / "seen.txt")
    guard.accept(blob)
    with pytest.raises(CryptoError, match="from pns in phase 'linkage' round 0: replayed"):
        guard.accept(blob)
    reloaded = ReplayGuard(tmp_path / "seen.txt")
    assert blob in reloaded
    reloaded.accept(_sealed(parties))  # a fresh message (new nonce) is accepted
    with pytest.raises(CryptoError, match="unknown format or too short"):
        reloaded.accept(b"\x01")


def test_identity_save_load(parties, tmp_path) -> None:
    path = tmp_path / "id.key"
    parties["bank01"].save(path)
    assert path.stat().st_mode & 0o077 == 0
    loaded = E2EIdentity.load(path)
    assert loaded.public_bytes() == parties["bank01"].public_bytes()
    assert open_sealed(loaded, parties["pns"].public_bytes(), _sealed(parties), HEADER)
    (tmp_path / "bad.key").write_bytes(b"123")
    with pytest.raises(CryptoError, match="cannot load"):
        E2EIdentity.load(tmp_path / "bad.key")
