"""Noise scales of a run, derived once from the public configuration.

Training: the unit of privacy is one bank account record. The PNS counts at most
`max_rows_per_account` rows per beneficiary account, so changing one record moves at most
that many rows between two status cells of the (cell, class) slice they sit in. The "ok"
count is not released (the PNS derives it from its own row counts), so with the coarse
status (ok / not ok) one released count moves: L2 sensitivity max_rows_per_account; with the
full status two may: sqrt(2) * max_rows_per_account. Inference uses k-ary randomized
response on the status instead (clients/bank.py), accounted by the bank.
"""

from __future__ import annotations

import math

from federation.config import ProtocolConfig


def training_noise(config: ProtocolConfig) -> tuple[float, float]:
    """(sigma of the summed Gaussian noise, L2 sensitivity) of the joint counts."""
    from crypto.accountant import calibrate_gaussian_sigma

    per_row = 1.0 if config.n_statuses == 2 else math.sqrt(2.0)
    sensitivity = per_row * config.max_rows_per_account
    return calibrate_gaussian_sigma(config.epsilon, config.delta, sensitivity), sensitivity
