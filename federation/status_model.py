"""The PNS's status-aware model: its own forest score combined with the bank's status.

T[cell, status] = P(anomaly | cell, status) is estimated from the DP-noised joint counts and
shrunk towards the PNS's own P(anomaly | cell) where counts are small or noisy. A row's score
adds, on the log-odds scale, the PNS's own evidence (its forest score) and the bank's
(E[cell, status] = logit T[cell, status] - logit P(anomaly | cell), the status's likelihood
ratio within the cell; the cells are StatusCells). So the ranking inside a cell still
follows the forest, and few, large released cells keep the DP noise small. Rows without a
bank answer (a bank dropped out, or an unknown final receiver) keep the forest's evidence
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# An anomaly is unexplained by the forest when under 5 % of its out-of-bag trees vote for it.
UNEXPLAINED_VOTES = 0.05
# Smallest cell of the status-aware table, as a share of the counted rows.
MIN_CELL_SHARE = 0.01
# Pseudo-count of the shrinkage towards the PNS-only rate of the cell.
PRIOR_WEIGHT = 2.0
# Bound on the released status evidence (log-odds units): keeps each masked row value below
# 2^13 in fixed point, so the mask hides it to 2^-30 (docs/security.md).
EVIDENCE_BOUND = 16.0
# Weight of the calibrated forest score against the cell's rate: a score of 0 is not certainty.
FOREST_WEIGHT = 100.0


class StatusCells:
    """The PNS-side partition of the status-aware table: the leaves of a small tree on the
    PNS's own features, grown to isolate the anomalies its forest does not explain.

    Those are the anomalies the bank's status explains, and the PNS's features tell them
    apart from the rest (they are larger than the sender's usual amount, for instance). So
    within a cell the status's likelihood ratio is closer to constant, which is what the
    additive model assumes. Each cell keeps at least 1 % of the counted rows, large against
    the DP noise. Depth 0, or no unexplained anomaly: one cell.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, oob_votes: np.ndarray,
                 depth: int, seed: int) -> None:
        from sklearn.tree import DecisionTreeClassifier

        self._tree: Any = None
        unexplained = (labels == 1) & (oob_votes < UNEXPLAINED_VOTES)
        if depth == 0 or not unexplained.any():
            return
        self._tree = DecisionTreeClassifier(
            max_depth=depth, class_weight="balanced", random_state=seed,
            min_samples_leaf=max(50, int(MIN_CELL_SHARE * len(labels)))
        ).fit(features, unexplained)
        self._leaves = np.flatnonzero(self._tree.tree_.children_left == -1)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if self._tree is None:
            return np.zeros(len(features), dtype=np.int16)
        return np.searchsorted(self._leaves, self._tree.apply(features)).astype(np.int16)


class ForestCalibration:
    """The forest's scores as probabilities: isotonic regression of the training labels on
    the out-of-bag scores.

    A forest's low scores are coarse votes, not probabilities, and the status evidence is
    added on the log-odds scale, so the scale matters. A tiny share of the raw score keeps
    the map strictly increasing: the forest's own ranking is unchanged.
    """

    def __init__(self, oob_scores: np.ndarray, labels: np.ndarray) -> None:
        from sklearn.isotonic import IsotonicRegression

        self._isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self._isotonic.fit(oob_scores, labels)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return self._isotonic.predict(scores) * (1.0 - 1e-6) + 1e-6 * scores


def beneficiary_keys(final_receivers: Any, accounts: Any) -> np.ndarray:
    """One key per beneficiary account: the bank holding it and the account number."""
    return (np.asarray(final_receivers, dtype=object).astype(str) + "|"
            + np.asarray(accounts, dtype=object).astype(str))


def capped_rows(
    rows: np.ndarray, accounts: np.ndarray, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """At most `cap` randomly chosen rows per account (sorted row indices)."""
    order = rng.permutation(len(rows))
    rank = pd.Series(accounts[order]).groupby(accounts[order], sort=False).cumcount().to_numpy()
    return np.sort(rows[order[rank < cap]])


@dataclass(frozen=True)
class StatusTable:
    """DP-noised joint counts[cell, label, status] (clipped at 0) and fallback[cell]."""

    counts: np.ndarray
    fallback: np.ndarray

    def table(self, reported_epsilon: float | None = None) -> np.ndarray:
        """T[cell, status] in [0, 1]. With `reported_epsilon`, the status is the one k-ary
        randomized response reports, so T is P(anomaly | cell, reported status)."""
        counts = self.counts
        if reported_epsilon is not None:
            counts = counts @ randomized_response_matrix(reported_epsilon, counts.shape[2])
        positives, total = counts[:, 1, :], counts.sum(axis=1)
        table = (positives + PRIOR_WEIGHT * self.fallback[:, None]) / (total + PRIOR_WEIGHT)
        return np.clip(table, 0.0, 1.0)

    @classmethod
    def from_noisy_counts(
        cls,
        noisy: np.ndarray,
        cells: np.ndarray,
        labels: np.ndarray,
        counted_rows: np.ndarray,
    ) -> StatusTable:
        """noisy: (n_cells, 2, n_status - 1) DP-noised counts of the non-ok statuses.

        The "ok" count is the PNS's exact row count of the cell minus the noisy others.
        """
        n_cells = noisy.shape[0]
        totals = np.zeros((n_cells, 2))
        np.add.at(totals, (cells[counted_rows], labels[counted_rows]), 1.0)
        non_ok = np.clip(noisy, 0.0, None)
        ok = np.clip(totals - non_ok.sum(axis=2), 0.0, None)
        all_rows = np.zeros((n_cells, 2))
        np.add.at(all_rows, (cells, labels), 1.0)
        fallback = (all_rows[:, 1] + 1e-3) / (all_rows.sum(axis=1) + 1.0)
        return cls(counts=np.concatenate([ok[:, :, None], non_ok], axis=2), fallback=fallback)

    def status_log_ratio(self, reported_epsilon: float | None = None) -> np.ndarray:
        """E[cell, status] = logit T[cell, status] - logit fallback[cell], within +-16."""
        ratio = log_odds(self.table(reported_epsilon)) - log_odds(self.fallback)[:, None]
        return np.clip(ratio, -EVIDENCE_BOUND, EVIDENCE_BOUND)

    def forest_log_odds(self, scores: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """The PNS's own evidence: logit of its forest score, shrunk towards the cell's rate."""
        return log_odds((FOREST_WEIGHT * scores + self.fallback[cells]) / (FOREST_WEIGHT + 1))

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "fallback": self.fallback.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusTable:
        return cls(counts=np.asarray(data["counts"]), fallback=np.asarray(data["fallback"]))


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1.0 - 1e-9)
    return np.log(p) - np.log1p(-p)


def combined_scores(forest_log_odds: np.ndarray, status_log_ratio: np.ndarray) -> np.ndarray:
    """P(anomaly | forest score, status) from the two pieces of evidence."""
    from scipy.special import expit

    return expit(forest_log_odds + status_log_ratio)


def randomized_response_matrix(epsilon: float, k: int) -> np.ndarray:
    """Q[true, reported] of k-ary randomized response at `epsilon`."""
    from crypto.dp import rr_keep_probability

    keep = rr_keep_probability(epsilon, k)
    q = np.full((k, k), (1.0 - keep) / (k - 1))
    np.fill_diagonal(q, keep)
    return q
