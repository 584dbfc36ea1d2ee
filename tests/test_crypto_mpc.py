"""Label-only inference with CrypTen: PNS, bank and dealer as separate local processes."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.crypten_compat import import_crypten
from crypto.mpc import secure_flags
from federation.errors import ProtocolError


def test_import_shim_gives_working_crypten() -> None:
    crypten = import_crypten()
    assert import_crypten() is crypten and hasattr(crypten, "cryptensor")


def test_flags_match_the_plaintext_score_and_only_the_pns_gets_them() -> None:
    rng = np.random.default_rng(3)
    n, k = 3000, 2
    base = rng.uniform(-4, 4, n)
    evidence = rng.uniform(-8, 8, (n, k))
    status = rng.integers(-1, k, n)  # -1: the bank does not answer this row
    onehot = np.zeros((n, k))
    onehot[status >= 0, status[status >= 0]] = 1.0
    pns, bank = secure_flags(base, evidence, onehot, threshold=0.3)
    score = base + (evidence * onehot).sum(axis=1)
    clear = np.abs(score - 0.3) > 1e-3  # fixed point (16 bits) decides the near-ties
    np.testing.assert_array_equal(pns.flags[clear], (score > 0.3)[clear])
    assert bank.flags is None
    assert pns.bytes_sent > 0 and bank.bytes_sent > 0 and pns.rounds > 0


def test_bad_shapes_rejected() -> None:
    with pytest.raises(ProtocolError, match="base \\(n,\\), evidence and onehot"):
        secure_flags(np.zeros(3), np.zeros((3, 2)), np.zeros((4, 2)), 0.0)
