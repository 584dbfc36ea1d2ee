"""FairSISA: equalized-odds post-processing for a SISA ensemble of M binary voters.

Three ways, all fitted with `fit(votes, y, group)` on held-out rows:
- "constituent" (a): post-process each constituent's vote, then take the strict majority
  of the post-processed (randomised) votes;
- "aggregate" (b): post-process the ensemble's majority vote;
- "votes" (c): post-process the number of positive votes (levels 0..M) per group;
- "pattern": post-process the joint vote pattern (each distinct pattern seen in fitting is a
  level). It is the optimal one of all, since the others are functions of the pattern, but
  it has up to 2^M cells, so it only pays when the fitting data cover the patterns; a
  pattern never seen in fitting takes the decision of its nearest seen patterns (Hamming
  distance) and warns.
(c) allows any map from the count to a decision by default (`monotone=None`: a
non-monotone map is a valid derived predictor, and the LP is tiny); (a) and (b) use
randomised thresholds, as fairlearn's ThresholdOptimizer does.

Every (group, level) cell is decided, also those with no fitting rows (see
equalized_odds.py: nearest seen level by default, with a warning when a row lands there).

Excluded shards: when only some voters answer (a host is down, a deletion is queued),
`predict_proba(votes, group, voters=[...])` names the columns' voters. (a) keeps the fitted
post-processors of those voters and takes their majority; (b) and (c) refit on the
fitting votes of those voters only (the count now runs over fewer voters), cached per set.

After a forget, one shard's model changes: `update_voter(m, new_votes)` replaces voter m's
votes on the fitting rows and updates only the cells of the rows whose vote changed (and
re-solves only when a row changed cell: for (b), when a majority flipped);
`forget_rows(mask)` deletes fitting rows (a calibration row whose owner asked to be
forgotten). Both re-solve the LP from the updated cell counts.
(b) is the special case of (c) whose map depends only on whether the count is a majority,
so (c)'s LP optimum is never worse on the fitting data. (a) is a function of the full vote
pattern; it is a special case of (c) when the constituents are exchangeable, which SISA
shards (same learner, i.i.d. shards) are in distribution but not exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from llm_modules.fairness.equalized_odds import (
    EmptyCellWarning,
    EqualizedOddsPostProcessor,
    FairnessError,
    check_inputs,
)
from llm_modules.fairness.metrics import accuracy

FAIRSISA_METHODS = ("constituent", "aggregate", "votes", "pattern")


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
        self,
        method: str = "votes",
        monotone: bool | None = None,
        objective: str = "accuracy",
        fill: str = "nearest",
        tolerance: float = 0.0,
    ) -> None:
        self.method = method
        self.monotone = monotone
        self.objective = objective
        self.fill = fill
        self.tolerance = tolerance

    def _monotone(self) -> bool:
        if self.monotone is not None:
            return self.monotone
        return self.method in ("constituent", "aggregate")

    def _outputs(self, votes: np.ndarray) -> list[np.ndarray]:
        """What each post-processor sees: each vote (a), the majority (b), the count (c)."""
        if self.method == "constituent":
            return [votes[:, m] for m in range(votes.shape[1])]
        if self.method == "aggregate":
            return [majority(votes)]
        if self.method == "pattern":
            return [self._pattern_level(votes)]
        return [votes.sum(axis=1)]

    def _levels(self, n_voters: int) -> np.ndarray:
        if self.method == "votes":
            return np.arange(n_voters + 1, dtype=np.float64)
        if self.method == "pattern":
            return np.arange(len(self.patterns_), dtype=np.float64)
        return np.array([0.0, 1.0])

    def _pattern_level(self, votes: np.ndarray) -> np.ndarray:
        """Index of each row's pattern among the fitted ones; an unseen pattern gets a
        fractional index only as a marker (mapped to its nearest seen patterns later)."""
        found = {tuple(p): k for k, p in enumerate(self.patterns_.tolist())}
        return np.array([found.get(tuple(row), -1) for row in votes.tolist()], dtype=np.float64)

    def _fit_posts(self, votes: np.ndarray) -> list[EqualizedOddsPostProcessor]:
        levels = self._levels(votes.shape[1])
        return [
            EqualizedOddsPostProcessor(
                self._monotone(), levels, self.objective, self.fill, self.tolerance
            ).fit(output, self.y_, self.group_)
            for output in self._outputs(votes)
        ]

    def fit(self, votes_or_scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> FairSISA:
        if self.method not in FAIRSISA_METHODS:
            raise FairnessError(
                f"FairSISA method {self.method!r}: expected one of {', '.join(FAIRSISA_METHODS)}"
            )
        votes = as_votes(votes_or_scores)
        _, labels, group = check_inputs(votes[:, 0], y, group, "FairSISA fit")
        self.n_voters_ = votes.shape[1]
        # The fitting rows stay with the estimator: an excluded shard or a forget refits on them.
        # Column-major: a forget replaces one voter's column.
        self.votes_ = np.asfortranarray(votes.astype(np.int8))
        # Each row's positive votes, kept up to date: a forget's changed rows read their
        # count here, not from their row of votes_ (one cache line per voter, column-major).
        self.count_ = votes.sum(axis=1)
        self.y_, self.group_ = np.asarray(labels), group
        if self.method == "pattern":
            self.patterns_ = np.unique(votes, axis=0)
        self.post_ = self._fit_posts(votes)
        self.g_index_ = self.post_[0]._group_index(group)
        self._reduced: dict[tuple[int, ...], list[EqualizedOddsPostProcessor]] = {}
        return self

    # -- after a forget -------------------------------------------------------------
    def update_voter(self, voter: int, new_votes: np.ndarray) -> FairSISA:
        """Voter `voter` now votes `new_votes` on the fitting rows (its shard retrained after
        a forget). Only the rows whose vote changed move between cells."""
        if not 0 <= voter < self.n_voters_:
            raise FairnessError(f"FairSISA update: voter {voter} not in 0..{self.n_voters_ - 1}")
        values = np.asarray(new_votes)
        if values.shape != (len(self.y_),):
            raise FairnessError(
                f"FairSISA update: expected {len(self.y_)} votes (one per fitting row), got "
                f"shape {values.shape}"
            )
        # NaN fails both comparisons (a NaN minimum or maximum).
        if values.dtype.kind == "f" and not (
            np.minimum.reduce(values) >= 0 and np.maximum.reduce(values) <= 1
        ):
            raise FairnessError("FairSISA update: votes must be 0/1 and scores in [0, 1]")
        new = values >= 0.5
        # The stored votes are 0/1 int8: read as booleans without a copy.
        changed = np.flatnonzero(new != self.votes_[:, voter].view(np.bool_))
        self.resolved_ = False  # whether this update re-solved an LP
        if self.method == "pattern":
            self.votes_[:, voter] = new
            self.count_ = self.votes_.sum(axis=1, dtype=np.int64)
            self.patterns_ = np.unique(self.votes_, axis=0)
            self.post_ = self._fit_posts(self.votes_)
            self.resolved_ = True
        elif len(changed):
            # Only the changed rows move: one cell out, one cell in, then one re-solve.
            gained = new[changed]  # the vote became positive (else negative)
            self.votes_[changed, voter] = gained
            old_count = self.count_[changed]
            new_count = old_count + np.where(gained, 1, -1)
            self.count_[changed] = new_count
            index = voter if self.method == "constituent" else 0
            post = self.post_[index]
            if self.method == "votes":
                # The levels are the counts 0..M, and every changed vote moves its row by one.
                rows, old_level, new_level = changed, old_count, new_count
            else:
                old_out, new_out = self._changed_outputs(gained, old_count, new_count)
                old_level, new_level = post._level_index(old_out), post._level_index(new_out)
                moved = old_level != new_level
                rows, old_level, new_level = changed[moved], old_level[moved], new_level[moved]
            # (b): a changed vote moves a row only when it flips the majority. When no row
            # changes cell the LP's input is unchanged, and so is its solution: no re-solve.
            if len(rows):
                y, g = self.y_[rows], self.g_index_[rows]
                np.add.at(post.counts_, (g, old_level, y), -1.0)
                np.add.at(post.counts_, (g, new_level, y), 1.0)
                post._refit()
                self.resolved_ = True
        self._reduced = {}
        return self

    def _changed_outputs(
        self, gained: np.ndarray, old_count: np.ndarray, new_count: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the updated post-processor of (a) or (b) saw before and sees after on the
        changed rows (as `_outputs`: the vote, the majority)."""
        if self.method == "constituent":
            return (~gained).astype(np.int64), gained.astype(np.int64)
        m = self.n_voters_
        return (2 * old_count > m).astype(np.int64), (2 * new_count > m).astype(np.int64)

    def forget_rows(self, rows: np.ndarray) -> FairSISA:
        """Delete fitting rows (boolean mask or indices) from every post-processor."""
        mask = np.zeros(len(self.y_), dtype=bool)
        mask[np.asarray(rows)] = True
        gone = self.votes_[mask]
        if self.method == "pattern":
            keep = ~mask
            self.votes_, self.y_, self.group_ = self.votes_[keep], self.y_[keep], self.group_[keep]
            self.patterns_ = np.unique(self.votes_, axis=0)
            self.post_ = self._fit_posts(self.votes_)
        else:
            outputs = self._outputs(gone)
            for post, out in zip(self.post_, outputs, strict=True):
                post.update_counts(out, self.y_[mask], self.group_[mask], -1.0)
            keep = ~mask
            self.votes_, self.y_, self.group_ = self.votes_[keep], self.y_[keep], self.group_[keep]
        self.count_ = self.count_[~mask]
        self.votes_ = np.asfortranarray(self.votes_)
        self.g_index_ = self.post_[0]._group_index(self.group_)
        self._reduced = {}
        return self

    # -- prediction -----------------------------------------------------------------
    def _posts_for(self, voters: tuple[int, ...] | None) -> list[EqualizedOddsPostProcessor]:
        if voters is None or voters == tuple(range(self.n_voters_)):
            return self.post_
        if self.method == "constituent":
            return [self.post_[m] for m in voters]
        if voters not in self._reduced:
            reduced = FairSISA(
                self.method, self.monotone, self.objective, self.fill, self.tolerance
            )
            self._reduced[voters] = reduced.fit(
                self.votes_[:, list(voters)], self.y_, self.group_
            ).post_
            if self.method == "pattern":
                self._reduced_patterns = reduced.patterns_
        return self._reduced[voters]

    def _decision_proba(
        self, votes_or_scores: np.ndarray, group: np.ndarray, voters: Sequence[int] | None
    ) -> np.ndarray:
        """P(decision = 1) of each post-processor (rows x post-processors)."""
        votes = as_votes(votes_or_scores)
        chosen = None if voters is None else tuple(int(v) for v in voters)
        if chosen is None and votes.shape[1] != self.n_voters_:
            raise FairnessError(
                f"FairSISA predict: fitted on {self.n_voters_} voters, got {votes.shape[1]}; "
                "name the answering voters with voters=[...] to predict without the others"
            )
        if chosen is not None:
            if len(chosen) != votes.shape[1] or len(set(chosen)) != len(chosen):
                raise FairnessError(
                    f"FairSISA predict: voters={list(chosen)} must name each of the "
                    f"{votes.shape[1]} vote columns once"
                )
            if not all(0 <= v < self.n_voters_ for v in chosen) or not chosen:
                raise FairnessError(
                    f"FairSISA predict: voters={list(chosen)} must lie in 0..{self.n_voters_ - 1}"
                )
        posts = self._posts_for(chosen)
        if self.method == "pattern":
            patterns = (
                self.patterns_ if chosen in (None, tuple(range(self.n_voters_)))
                else self._reduced_patterns
            )
            return self._pattern_proba(posts[0], patterns, votes, group)[:, None]
        outputs = self._outputs(votes)
        pairs = zip(posts, outputs, strict=True)
        return np.stack([post.predict_proba(out, group) for post, out in pairs], axis=1)

    def _pattern_proba(
        self, post: EqualizedOddsPostProcessor, patterns: np.ndarray, votes: np.ndarray,
        group: np.ndarray,
    ) -> np.ndarray:
        """Seen patterns use their cell; an unseen one the mean of its nearest seen patterns
        (Hamming distance) in the same group, with a warning."""
        found = {tuple(p): k for k, p in enumerate(patterns.tolist())}
        index = np.array([found.get(tuple(row), -1) for row in votes.tolist()])
        proba = np.zeros(len(votes))
        seen = index >= 0
        if seen.any():
            proba[seen] = post.predict_proba(index[seen].astype(np.float64), group[seen])
        if (~seen).any():
            warnings.warn(
                f"FairSISA pattern: {int((~seen).sum())} rows have a vote pattern not seen in "
                "fit; decided by the nearest seen patterns",
                EmptyCellWarning,
                stacklevel=3,
            )
            unseen_groups = np.asarray(group)[~seen]
            if not np.isin(unseen_groups, post.groups_).all():
                raise FairnessError(
                    f"FairSISA predict: groups {sorted(set(unseen_groups.tolist()))} include "
                    f"one not seen in fit (known: {post.groups_.tolist()})"
                )
            g_index = post._group_index(unseen_groups)
            rows = np.nonzero(~seen)[0]
            for start in range(0, len(rows), 2048):  # Hamming distances in blocks
                block = votes[rows[start : start + 2048]].astype(np.float64)
                agree = block @ patterns.T + (1 - block) @ (1 - patterns).T
                nearest = agree == agree.max(axis=1, keepdims=True)
                values = post.p_[g_index[start : start + 2048]]
                proba[rows[start : start + 2048]] = (nearest * values).sum(1) / nearest.sum(1)
        return proba

    def predict_proba(
        self, votes_or_scores: np.ndarray, group: np.ndarray, voters: Sequence[int] | None = None
    ) -> np.ndarray:
        each = self._decision_proba(votes_or_scores, group, voters)
        return majority_probability(each) if self.method == "constituent" else each[:, 0]

    def predict(
        self, votes_or_scores: np.ndarray, group: np.ndarray, random_state: int | None = None,
        voters: Sequence[int] | None = None,
    ) -> np.ndarray:
        each = self._decision_proba(votes_or_scores, group, voters)
        drawn = (np.random.default_rng(random_state).random(each.shape) < each).astype(np.int64)
        return majority(drawn) if self.method == "constituent" else drawn[:, 0]

    def score(
        self, votes_or_scores: np.ndarray, y: np.ndarray, group: np.ndarray,
        voters: Sequence[int] | None = None,
    ) -> float:
        """Expected accuracy of the randomised decisions."""
        return accuracy(y, self.predict_proba(votes_or_scores, group, voters))
