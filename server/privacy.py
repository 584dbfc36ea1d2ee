"""Noise scales of a run, derived once from the public configuration.

Training: the unit of privacy is one bank account record. The PNS counts at most
`max_rows_per_account` rows per beneficiary account, so changing one record moves at most
that many rows between two status cells of the (bin, label) slice they sit in:
L2 sensitivity sqrt(2) * max_rows_per_account (one cell when one status is "ok", which is
not released directly). Inference uses k-ary randomized response on the status instead
(clients/bank.py), accounted by the bank.
"""

from __future__ import annotations

import math

from federation.config import ProtocolConfig


def training_noise(config: ProtocolConfig) -> tuple[float, float]:
    """(sigma of the summed Gaussian noise, L2 sensitivity) of the joint counts."""
    from crypto.accountant import calibrate_gaussian_sigma

    sensitivity = math.sqrt(2.0) * config.max_rows_per_account
    return calibrate_gaussian_sigma(config.epsilon, config.delta, sensitivity), sensitivity
