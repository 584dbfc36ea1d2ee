"""The PNS's status-aware model: its own forest combined with the bank's status.

The PNS sorts its training rows into three classes: normal, anomalies its forest explains
(at least 5 % of their out-of-bag votes) and anomalies it does not; the latter are the
ones the bank's status explains. Its forest predicts the three classes from its own
features. The DP-noised joint counts give, per cell (StatusCells) and class, the
distribution of the bank's status, P(status | cell, class). A row's score is then

    P(anomaly | x, s) ∝ sum over the two anomaly classes c of P(c | x) P(s | cell, c),
    against P(normal | x) P(s | cell, normal),

so a "not ok" status raises a row as far as the anomalies that look like it are the ones
a bank explains. The bank's part enters as per-row evidence E[row, status], on the log-odds
scale on top of the forest's own P(anomaly | x); rows without a bank answer (a bank
dropped out, or an unknown final receiver) keep the forest's evidence alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# An anomaly is unexplained by the forest when under 5 % of its out-of-bag trees vote for it.
UNEXPLAINED_VOTES = 0.05
NORMAL, EXPLAINED, UNEXPLAINED = 0, 1, 2
N_CLASSES = 3
# Smallest cell of the status-aware table, as a share of the counted rows.
MIN_CELL_SHARE = 0.01
# The normal rows' status rate of a cell is shrunk towards that of all cells (empirical
# Bayes): normal rows are rarely "not ok" (0.05-0.5 %), so a small cell holds a handful of
# them and the DP noise can swamp that count, while a cell of tens of thousands of rows
# measures its own rate well. Where the status explains anomalies only for some payments (an
# amount band, some receiving banks), ordinary non-ok statuses (stale records, flagged but
# legitimate receivers) are several times rarer there than elsewhere, and a rate pooled
# over the cells would mute the status's evidence exactly where it matters. The spread of
# the cells' rates is estimated from the counts (method of moments, binomial and DP noise
# removed), at least MIN_RATE_SPREAD times the pooled rate: the estimate alone is often 0
# with four cells and the DP noise. Anomaly classes get one pseudo-row spread evenly over
# the statuses.
MIN_RATE_SPREAD = 0.2
# Bound on the released status evidence (log-odds units): keeps each masked row value below
# 2^13 in fixed point, so the mask hides it to 2^-30 (docs/security.md).
EVIDENCE_BOUND = 16.0
# Weight of the calibrated forest scores against the cell's class rates: a score of 0 is
# not certainty.
FOREST_WEIGHT = 100.0


def anomaly_classes(labels: np.ndarray, oob_votes: np.ndarray) -> np.ndarray:
    """NORMAL, EXPLAINED or UNEXPLAINED per row, from the labels and the out-of-bag votes
    of a forest trained on the labels."""
    explained = np.where(oob_votes >= UNEXPLAINED_VOTES, EXPLAINED, UNEXPLAINED)
    return np.where(labels == 1, explained, NORMAL).astype(np.int8)


class StatusCells:
    """The PNS-side partition of the status-aware table: the leaves of a small tree on the
    PNS's own features, grown to isolate the anomalies its forest does not explain.

    Those are the anomalies the bank's status explains, and the PNS's features tell them
    apart from the rest (they are larger than the sender's usual amount, for instance). So
    within a cell each class's status distribution is closer to constant, which is what the
    model assumes. Each cell keeps at least 1 % of the counted rows, large against the DP
    noise. Depth 0, or no unexplained anomaly: one cell.
    """

    def __init__(self, features: np.ndarray, classes: np.ndarray, depth: int, seed: int
                 ) -> None:
        from sklearn.tree import DecisionTreeClassifier

        self._tree: Any = None
        unexplained = classes == UNEXPLAINED
        if depth == 0 or not unexplained.any():
            return
        self._tree = DecisionTreeClassifier(
            max_depth=depth, class_weight="balanced", random_state=seed,
            min_samples_leaf=max(50, int(MIN_CELL_SHARE * len(classes)))
        ).fit(features, unexplained)
        self._leaves = np.flatnonzero(self._tree.tree_.children_left == -1)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if self._tree is None:
            return np.zeros(len(features), dtype=np.int16)
        return np.searchsorted(self._leaves, self._tree.apply(features)).astype(np.int16)


class ForestCalibration:
    """The forest's scores of the two anomaly classes as probabilities: per class, isotonic
    regression of class membership on the out-of-bag scores.

    A forest's low scores are coarse votes, not probabilities, and the status evidence
    mixes them, so the scale matters. A tiny share of the raw score keeps each map strictly
    increasing: the forest's own ranking is unchanged.
    """

    def __init__(self, oob_scores: np.ndarray, classes: np.ndarray) -> None:
        from sklearn.isotonic import IsotonicRegression

        self._isotonic = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                oob_scores[:, c], classes == c)
            for c in (EXPLAINED, UNEXPLAINED)
        ]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """(rows, 3) forest scores -> (rows, 2) P(explained), P(unexplained)."""
        return np.column_stack([
            iso.predict(scores[:, c]) * (1.0 - 1e-6) + 1e-6 * scores[:, c]
            for iso, c in zip(self._isotonic, (EXPLAINED, UNEXPLAINED), strict=True)
        ])


def beneficiary_keys(final_receivers: Any, accounts: Any) -> np.ndarray:
    """One integer key per beneficiary account (the bank holding it and the account
    number), equal exactly where both are."""
    bank, _ = pd.factorize(final_receivers)
    account, uniques = pd.factorize(accounts)
    return bank.astype(np.int64) * (len(uniques) + 1) + account


def capped_rows(
    rows: np.ndarray, accounts: np.ndarray, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """At most `cap` randomly chosen rows per account (sorted row indices)."""
    order = rng.permutation(len(rows))
    rank = pd.Series(accounts[order]).groupby(accounts[order], sort=False).cumcount().to_numpy()
    return np.sort(rows[order[rank < cap]])


@dataclass(frozen=True)
class StatusTable:
    """DP-noised joint counts[cell, class, status] (clipped at 0) and class_rates[cell, class],
    the PNS's own share of each class in each cell."""

    counts: np.ndarray
    class_rates: np.ndarray
    # Variance of the DP noise on each released count (0: exact counts).
    noise_variance: float = 0.0

    def table(self) -> np.ndarray:
        """P[cell, class, status], the distribution of the status as the banks report it
        (their randomized response at training is the one they answer with at inference,
        drawn once per question, so no correction is needed)."""
        counts = self.counts
        k = counts.shape[2]
        total = counts.sum(axis=2, keepdims=True)
        table = (counts + 1.0 / k) / (total + 1.0)
        normal = counts[:, NORMAL, :]
        pooled = (normal.sum(axis=0) + 1.0 / k) / (normal.sum() + 1.0)
        own = (normal + pooled) / (total[:, NORMAL, :] + 1.0)
        weight = _pooling_weights(normal, self.noise_variance)[:, None]
        table[:, NORMAL, :] = weight * pooled + (1.0 - weight) * own
        return table

    @classmethod
    def from_noisy_counts(
        cls,
        noisy: np.ndarray,
        cells: np.ndarray,
        classes: np.ndarray,
        counted_rows: np.ndarray,
        noise_variance: float = 0.0,
    ) -> StatusTable:
        """noisy: (n_cells, 3, n_status - 1) DP-noised counts of the non-ok statuses, each
        with noise of variance `noise_variance`.

        The "ok" count is the PNS's exact row count of the (cell, class) minus the noisy
        others; the class rates are over all the PNS's rows.
        """
        n_cells = noisy.shape[0]
        totals = np.zeros((n_cells, N_CLASSES))
        np.add.at(totals, (cells[counted_rows], classes[counted_rows]), 1.0)
        non_ok = np.clip(noisy, 0.0, None)
        ok = np.clip(totals - non_ok.sum(axis=2), 0.0, None)
        all_rows = np.zeros((n_cells, N_CLASSES))
        np.add.at(all_rows, (cells, classes), 1.0)
        rates = (all_rows + 1e-3) / (all_rows.sum(axis=1, keepdims=True) + 1.0)
        return cls(counts=np.concatenate([ok[:, :, None], non_ok], axis=2), class_rates=rates,
                   noise_variance=float(noise_variance))

    def class_probabilities(self, scores: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """(rows, 3) P(class | x): the calibrated forest scores shrunk towards the cell's
        class rates."""
        anomaly = (FOREST_WEIGHT * scores + self.class_rates[cells, 1:]) / (FOREST_WEIGHT + 1)
        anomaly = np.clip(anomaly, 1e-9, 1.0)
        normal = np.clip(1.0 - anomaly.sum(axis=1), 1e-9, 1.0)
        return np.column_stack([normal, anomaly])

    def forest_log_odds(self, scores: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """The PNS's own evidence: log-odds of an anomaly given its features alone."""
        return _anomaly_log_odds(self.class_probabilities(scores, cells))

    def status_evidence(self, scores: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """E[row, status]: what each status would add to the row's forest log-odds, within
        +-EVIDENCE_BOUND."""
        p = self.class_probabilities(scores, cells)
        dist = self.table()[cells]  # (rows, class, status)
        anomaly = np.einsum("rc,rcs->rs", p[:, 1:], dist[:, 1:, :])
        normal = p[:, NORMAL, None] * dist[:, NORMAL, :]
        evidence = np.log(anomaly) - np.log(normal) - _anomaly_log_odds(p)[:, None]
        return np.clip(evidence, -EVIDENCE_BOUND, EVIDENCE_BOUND)

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "class_rates": self.class_rates.tolist(),
                "noise_variance": self.noise_variance}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusTable:
        return cls(counts=np.asarray(data["counts"]),
                   class_rates=np.asarray(data["class_rates"]),
                   noise_variance=float(data.get("noise_variance", 0.0)))


def _pooling_weights(normal: np.ndarray, noise_variance: float) -> np.ndarray:
    """Per cell, the weight of the pooled status rate of normal rows against the cell's own:
    v / (v + spread^2), v the variance of the cell's measured not-ok rate (binomial plus the
    DP noise of its non-ok counts), spread^2 the cells' true variance around the pooled
    rate. normal: (n_cells, n_status) counts of the normal rows."""
    rows = normal.sum(axis=1)
    seen = rows > 0
    safe = np.where(seen, rows, 1.0)
    rate = normal[:, 1:].sum(axis=1) / safe
    pooled = normal[:, 1:].sum() / max(rows.sum(), 1.0)
    variance = (pooled * (1.0 - pooled) / safe
                + noise_variance * (normal.shape[1] - 1) / safe**2)
    spread = np.sum(rows * ((rate - pooled) ** 2 - variance)) / max(rows.sum(), 1.0)
    spread = max(spread, (MIN_RATE_SPREAD * pooled) ** 2)
    if spread == 0.0:  # no non-ok normal row anywhere: the cells' rates are the pooled one
        return np.ones(len(rows))
    return np.where(seen, variance / (variance + spread), 1.0)


def _anomaly_log_odds(class_probabilities: np.ndarray) -> np.ndarray:
    p = class_probabilities
    return np.log(p[:, 1:].sum(axis=1)) - np.log(p[:, NORMAL])


def combined_scores(forest_log_odds: np.ndarray, status_evidence: np.ndarray) -> np.ndarray:
    """P(anomaly | features, status) from the two pieces of evidence."""
    from scipy.special import expit

    return expit(forest_log_odds + status_evidence)
