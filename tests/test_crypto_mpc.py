"""CrypTen two-party comparison: PNS, bank and dealer as separate local processes."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.crypten_compat import import_crypten
from crypto.mpc import secure_threshold
from federation.errors import ProtocolError


def test_import_shim_gives_working_crypten() -> None:
    crypten = import_crypten()
    assert import_crypten() is crypten and hasattr(crypten, "cryptensor")


def test_threshold_on_shares_matches_plaintext() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(-2, 2, 2000)
    fixed = np.round(scores * 2**16).astype(np.int64)
    mask = rng.integers(0, 2**44, scores.size)
    bank_share = fixed + mask  # what the bank decrypted: masked, statistically hiding
    result = secure_threshold(-mask, bank_share, threshold=0.3)
    np.testing.assert_array_equal(result.labels, fixed / 2**16 > 0.3)
    assert result.compute_seconds < result.seconds


def test_bad_shares_rejected() -> None:
    with pytest.raises(ProtocolError, match="1-D int64 arrays of equal length"):
        secure_threshold(np.zeros(3, np.int64), np.zeros(4, np.int64), 0.0)
    with pytest.raises(ProtocolError, match="1-D int64"):
        secure_threshold(np.zeros(3), np.zeros(3), 0.0)
