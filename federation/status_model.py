"""The PNS's status-aware model: its forest's score bin x the bank's status.

T[bin, status] = P(anomaly | bin, status), estimated from the DP-noised joint counts and
shrunk towards the PNS's own P(anomaly | bin) where counts are small or noisy. Rows that
get no bank answer (a bank dropped out, or an unknown final receiver) use that fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Pseudo-count of the shrinkage towards the PNS-only rate of the bin.
PRIOR_WEIGHT = 2.0
# Bin edges sit at these upper-tail masses of the training score distribution, so that
# the rare high-score rows get fine bins.
_MIN_TAIL = 1e-4


def score_bin_edges(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """`n_bins` increasing edges (so n_bins + 1 bins) from the training scores."""
    tail = np.geomspace(0.5, _MIN_TAIL, n_bins)
    edges = np.quantile(scores, 1.0 - tail)
    return np.maximum.accumulate(edges + np.arange(n_bins) * 1e-12)


def capped_rows(
    rows: np.ndarray, accounts: np.ndarray, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """At most `cap` randomly chosen rows per account (sorted row indices)."""
    order = rng.permutation(len(rows))
    rank = pd.Series(accounts[order]).groupby(accounts[order], sort=False).cumcount().to_numpy()
    return np.sort(rows[order[rank < cap]])


@dataclass(frozen=True)
class StatusTable:
    """table[bin, status] and fallback[bin], both probabilities in [0, 1]."""

    table: np.ndarray
    fallback: np.ndarray

    @property
    def base(self) -> np.ndarray:
        """Score of status 0 ("ok") per bin."""
        return self.table[:, 0]

    def status_offsets(self, bins: np.ndarray) -> np.ndarray:
        """Per row: T[bin, s] - T[bin, ok] for the non-ok statuses s (the CKKS weights)."""
        return (self.table[:, 1:] - self.table[:, :1])[bins]

    @classmethod
    def from_noisy_counts(
        cls,
        noisy: np.ndarray,
        bins: np.ndarray,
        labels: np.ndarray,
        counted_rows: np.ndarray,
        n_bins: int,
    ) -> StatusTable:
        """noisy: (n_bins + 1, 2, n_status - 1) DP-noised counts of the non-ok statuses."""
        n_groups = n_bins + 1
        totals = np.zeros((n_groups, 2))
        np.add.at(totals, (bins[counted_rows], labels[counted_rows]), 1.0)
        non_ok = np.clip(noisy, 0.0, None)
        ok = np.clip(totals - non_ok.sum(axis=2), 0.0, None)
        counts = np.concatenate([ok[:, :, None], non_ok], axis=2)  # (bin, label, status)
        all_rows = np.zeros((n_groups, 2))
        np.add.at(all_rows, (bins, labels), 1.0)
        fallback = (all_rows[:, 1] + 1e-3) / (all_rows.sum(axis=1) + 1.0)
        positives, total = counts[:, 1, :], counts.sum(axis=1)
        table = (positives + PRIOR_WEIGHT * fallback[:, None]) / (total + PRIOR_WEIGHT)
        return cls(table=np.clip(table, 0.0, 1.0), fallback=fallback)

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table.tolist(), "fallback": self.fallback.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusTable:
        return cls(table=np.asarray(data["table"]), fallback=np.asarray(data["fallback"]))
