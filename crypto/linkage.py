"""Record linkage by keyed hashes: the PNS and a bank compare identity strings (account,
name, street, address) without the bank learning strings it does not already hold.

Each value is hashed with keyed BLAKE2b (a PRF) under a key that only that PNS-bank pair
derives (X25519 + HKDF), with the column name as personalisation so equal strings in
different columns do not collide. The bank hashes its own records with the same key and
tests equality; a hash of a string it does not hold tells it nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from crypto.channel import E2EIdentity

DIGEST_BYTES = 16  # 128-bit tags: collisions among ~1e7 values have probability < 1e-24


def linkage_key(identity: E2EIdentity, peer_public: bytes, pns_id: str, bank_id: str) -> bytes:
    """The pairwise hashing key of one PNS-bank pair. It is the same in every run (the
    pair's pinned keys do not change), so a bank recognises a question asked before and
    gives the same answer; the price is that it sees which queries repeat across runs."""
    info = f"pv4fad linkage v2|{pns_id}|{bank_id}".encode()
    return identity.shared_key(peer_public, info)


def keyed_hashes(values: Iterable[str], key: bytes, column: str) -> np.ndarray:
    """Keyed hashes of `values` as a fixed-width bytes array (dtype S16)."""
    person = column.encode()[:16]
    digest = [
        hashlib.blake2b(str(v).encode(), key=key, person=person, digest_size=DIGEST_BYTES).digest()
        for v in values
    ]
    return np.array(digest, dtype=f"S{DIGEST_BYTES}")
