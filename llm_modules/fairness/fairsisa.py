"""FairSISA: equalized-odds post-processing for a SISA ensemble of M binary voters.

Three ways, all fitted with `fit(votes, y, group)` on held-out rows:
- "constituent" (a): post-process each constituent's vote, then take the strict majority
  of the post-processed (randomised) votes;
- "aggregate" (b): post-process the ensemble's majority vote;
- "votes" (c): post-process the number of positive votes (levels 0..M) per group.
(b) is the special case of (c) whose map depends only on whether the count is a majority,
so (c)'s LP optimum is never worse on the fitting data. (a) is a function of the full vote
pattern; it is a special case of (c) when the constituents are exchangeable, which SISA
shards (same learner, i.i.d. shards) are in distribution but not exactly.
"""

from __future__ import annotations

import numpy as np

from llm_modules.fairness.equalized_odds import EqualizedOddsPostProcessor, FairnessError
from llm_modules.fairness.metrics import accuracy

FAIRSISA_METHODS = ("constituent", "aggregate", "votes")


def as_votes(votes_or_scores: np.ndarray) -> np.ndarray:
    """0/1 votes (rows x constituents); probabilities are thresholded at 0.5."""
    values = np.asarray(votes_or_scores, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 1:
        raise FairnessError(
            f"FairSISA: expected a 2-d array rows x constituents, got shape {values.shape}"
        )
    if ((values < 0) | (values > 1)).any() or np.isnan(values).any():
        raise FairnessError("FairSISA: votes must be 0/1 and scores probabilities in [0, 1]")
    return (values >= 0.5).astype(np.int64)


def majority(votes: np.ndarray) -> np.ndarray:
    """Strict majority (a tie is negative), as the SISA ensemble votes."""
    return (2 * votes.sum(axis=1) > votes.shape[1]).astype(np.int64)


def majority_probability(p: np.ndarray) -> np.ndarray:
    """P(strict majority of independent Bernoulli(p[:, m]) votes), exactly (Poisson-binomial)."""
    n, m = p.shape
    dist = np.zeros((n, m + 1))
    dist[:, 0] = 1.0
    for j in range(m):
        shifted = np.zeros_like(dist)
        shifted[:, 1:] = dist[:, :-1] * p[:, j : j + 1]
        dist = dist * (1.0 - p[:, j : j + 1]) + shifted
    winning = np.arange(m + 1) * 2 > m
    return dist[:, winning].sum(axis=1)


class FairSISA:
    """scikit-learn-style estimator: `fit(votes_or_scores, y, group)`, `predict_proba`
    (P(decision = 1), exact), `predict` (one randomised draw), `score` (expected accuracy)."""

    def __init__(
        self, method: str = "votes", monotone: bool = True, objective: str = "accuracy"
    ) -> None:
        self.method = method
        self.monotone = monotone
        self.objective = objective

    def _outputs(self, votes: np.ndarray) -> list[np.ndarray]:
        """What each post-processor sees: each vote (a), the majority (b), the count (c)."""
        if self.method == "constituent":
            return [votes[:, m] for m in range(votes.shape[1])]
        if self.method == "aggregate":
            return [majority(votes)]
        return [votes.sum(axis=1)]

    def fit(self, votes_or_scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> FairSISA:
        if self.method not in FAIRSISA_METHODS:
            raise FairnessError(
                f"FairSISA method {self.method!r}: expected one of {', '.join(FAIRSISA_METHODS)}"
            )
        votes = as_votes(votes_or_scores)
        self.n_voters_ = votes.shape[1]
        top = self.n_voters_ if self.method == "votes" else 1
        levels = np.arange(top + 1, dtype=np.float64)
        self.post_ = [
            EqualizedOddsPostProcessor(self.monotone, levels, self.objective).fit(output, y, group)
            for output in self._outputs(votes)
        ]
        return self

    def _decision_proba(self, votes_or_scores: np.ndarray, group: np.ndarray) -> np.ndarray:
        """P(decision = 1) of each post-processor (rows x post-processors)."""
        votes = as_votes(votes_or_scores)
        if votes.shape[1] != self.n_voters_:
            raise FairnessError(
                f"FairSISA predict: fitted on {self.n_voters_} voters, got {votes.shape[1]}"
            )
        pairs = zip(self.post_, self._outputs(votes), strict=True)
        return np.stack([post.predict_proba(out, group) for post, out in pairs], axis=1)

    def predict_proba(self, votes_or_scores: np.ndarray, group: np.ndarray) -> np.ndarray:
        each = self._decision_proba(votes_or_scores, group)
        return majority_probability(each) if self.method == "constituent" else each[:, 0]

    def predict(
        self, votes_or_scores: np.ndarray, group: np.ndarray, random_state: int | None = None
    ) -> np.ndarray:
        each = self._decision_proba(votes_or_scores, group)
        drawn = (np.random.default_rng(random_state).random(each.shape) < each).astype(np.int64)
        return majority(drawn) if self.method == "constituent" else drawn[:, 0]

    def score(self, votes_or_scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
        """Expected accuracy of the randomised decisions."""
        return accuracy(y, self.predict_proba(votes_or_scores, group))
