"""End-to-end authenticated encryption for payloads the coordinator relays.

X25519 key agreement, HKDF-SHA256 key derivation and ChaCha20-Poly1305 (all from
`cryptography`). The message header (run, phase, round, sender, receiver, message type) is
bound as associated data: a payload replayed into another run, phase or round, delivered to
another party, tampered with, or sealed under another key fails to open.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation.errors import CryptoError
from federation.transcript import PayloadClass

SEALED_PAYLOAD_CLASS = PayloadClass.CIPHERTEXT  # what the coordinator relays
IDENTITY_FILE = "identity.key"  # a party's X25519 private key in its state directory
_VERSION = 1
_NONCE = 12
_CHANNEL_INFO = b"pv4fad e2e channel v1"


@dataclass(frozen=True)
class MessageHeader:
    """Routing metadata of one relayed message; public, and authenticated by `seal`."""

    run_id: str
    phase: str
    round: int
    sender: str
    receiver: str
    message_type: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> MessageHeader:
        try:
            return cls(**json.loads(data.decode()))
        except (ValueError, TypeError) as exc:
            raise CryptoError(f"sealed message: unreadable header ({exc})") from exc


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_bytes(data: bytes, owner: str = "peer") -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key, naming its owner on failure."""
    try:
        return X25519PublicKey.from_public_bytes(bytes(data))
    except ValueError as exc:
        raise CryptoError(f"X25519 public key of {owner}: {exc}") from exc


class E2EIdentity:
    """A party's long-term X25519 key pair for the relayed channel and secure aggregation."""

    payload_class = PayloadClass.PUBLIC  # only public_bytes() ever leaves the party

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._private = private_key
        self._keys: dict[tuple[bytes, bytes], bytes] = {}

    @classmethod
    def generate(cls) -> E2EIdentity:
        return cls(X25519PrivateKey.generate())

    def public_bytes(self) -> bytes:
        return _raw_public(self._private.public_key())

    def save(self, path: str | Path) -> None:
        """Write the raw private key to `path`, readable by the owner only."""
        raw = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)

    @classmethod
    def load(cls, path: str | Path) -> E2EIdentity:
        try:
            raw = Path(path).read_bytes()
            return cls(X25519PrivateKey.from_private_bytes(raw))
        except (OSError, ValueError) as exc:
            raise CryptoError(f"X25519 identity {path}: cannot load ({exc})") from exc

    def shared_key(self, peer_public: bytes, info: bytes) -> bytes:
        """32-byte key shared with the peer: HKDF-SHA256 over X25519, salted by both keys."""
        cache_key = (bytes(peer_public), info)
        if cache_key not in self._keys:
            peer = public_key_from_bytes(peer_public)
            secret = self._private.exchange(peer)
            salt = hashlib.sha256(b"".join(sorted([self.public_bytes(), bytes(peer_public)])))
            self._keys[cache_key] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=salt.digest(), info=info
            ).derive(secret)
        return self._keys[cache_key]


def seal(identity: E2EIdentity, peer_public: bytes, payload: bytes, header: MessageHeader) -> bytes:
    """Encrypt and authenticate `payload` for the peer; the header travels in clear, bound."""
    key = identity.shared_key(peer_public, _CHANNEL_INFO)
    nonce = os.urandom(_NONCE)  # random 96-bit nonces: collision-safe far beyond 2^32 messages
    head = header.encode()
    body = ChaCha20Poly1305(key).encrypt(nonce, bytes(payload), head)
    return struct.pack("<BI", _VERSION, len(head)) + head + nonce + body


def peek_header(blob: bytes) -> MessageHeader:
    """The clear routing header of a sealed message (not yet authenticated)."""
    if len(blob) < 5 or blob[0] != _VERSION:
        raise CryptoError("sealed message: unknown format or too short")
    (head_len,) = struct.unpack_from("<I", blob, 1)
    if len(blob) < 5 + head_len + _NONCE + 16:
        raise CryptoError("sealed message: truncated")
    return MessageHeader.decode(bytes(blob[5 : 5 + head_len]))


def message_id(blob: bytes) -> str:
    """Identifier of a sealed message (header and nonce), for replay guards."""
    peek_header(blob)  # refuses truncated or foreign blobs with a CryptoError
    (head_len,) = struct.unpack_from("<I", blob, 1)
    return hashlib.sha256(bytes(blob[: 5 + head_len + _NONCE])).hexdigest()


def open_sealed(
    identity: E2EIdentity, peer_public: bytes, blob: bytes, expected: MessageHeader
) -> bytes:
    """Check the header against what this party expects, then decrypt and verify."""
    found = peek_header(blob)
    where = f"message from {expected.sender} in phase {expected.phase!r}"
    if found != expected:
        diffs = [
            f"{k}={getattr(found, k)!r} (expected {getattr(expected, k)!r})"
            for k in asdict(expected)
            if getattr(found, k) != getattr(expected, k)
        ]
        raise CryptoError(f"{where}: header mismatch: {', '.join(diffs)}")
    head_len = struct.unpack_from("<I", blob, 1)[0]
    nonce_at = 5 + head_len
    nonce, body = bytes(blob[nonce_at : nonce_at + _NONCE]), bytes(blob[nonce_at + _NONCE :])
    key = identity.shared_key(peer_public, _CHANNEL_INFO)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body, expected.encode())
    except InvalidTag as exc:
        raise CryptoError(
            f"{where}: authentication failed (tampered, replayed, or sealed under another key)"
        ) from exc


class ReplayGuard:
    """Message ids already accepted; persisted as one id per line when `path` is given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._seen: set[str] = set()
        if self.path is not None and self.path.exists():
            self._seen = set(self.path.read_text(encoding="utf-8").split())

    def accept(self, blob: bytes) -> None:
        """Record the message; raise CryptoError if it was accepted before.

        Call it after `open_sealed` succeeded, so that forged blobs never enter the guard.
        """
        mid = message_id(blob)
        if mid in self._seen:
            header = peek_header(blob)
            raise CryptoError(
                f"message from {header.sender} in phase {header.phase!r} "
                f"round {header.round}: replayed (already accepted)"
            )
        self._seen.add(mid)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(mid + "\n")

    def __contains__(self, blob: bytes) -> bool:
        return message_id(blob) in self._seen
