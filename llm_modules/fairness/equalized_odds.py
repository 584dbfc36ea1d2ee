"""Equalized-odds post-processing (Hardt, Price and Srebro, 2016) as a linear program.

The predictor's output takes levels v_1 < ... < v_K. Per group g the derived predictor
says 1 with probability p[g, k] at level k. It minimises the expected error on the fitting
data subject to equal TPR and equal FPR in every group (scipy's linprog, HiGHS; for two
groups at tolerance 0, any map or monotone maps over given levels, an exact geometric
solver, `solve_two_groups`); with
`tolerance` > 0 the groups' TPR and FPR may differ from the first group's by at most that
much (the accuracy / fairness trade-off). With
`monotone=True`, p[g, .] is non-decreasing in the level, so each group's decision is a
randomised threshold: the feasible (FPR, TPR) set is the convex hull of that group's ROC
points, as in Hardt et al.'s score-based derived predictor and fairlearn's
ThresholdOptimizer; with `monotone=False` any map from levels to probabilities is allowed
(sensible only for a few levels, e.g. a binary prediction or a vote count). The loss is
the error rate (`objective="accuracy"`) or the balanced error rate ("balanced_accuracy",
each class weighted by the inverse of its frequency).

A (group, level) cell with no fitting rows has no cost and no constraint in the LP, so the
solver's value there is arbitrary. Such cells are decided after the solve: `fill="nearest"`
copies the group's nearest seen level (the mean of the two when equally near), which keeps a
monotone map monotone; `fill="pooled"` uses the count-weighted mean of the other groups'
decisions at that level (falling back to nearest when no group saw it). With given discrete
`levels` (votes, counts), predicting a row that lands in a filled cell warns
(`EmptyCellWarning`): its decision was not fitted on data.

The LP is built from the cell counts alone, so `update_counts` can move rows between cells
(a voter changed its vote after a forget, a calibration row was deleted) and re-solve
without touching the other rows.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linprog

from federation.errors import Pv4fadError
from llm_modules.fairness.metrics import accuracy

OBJECTIVES = ("accuracy", "balanced_accuracy")
FILLS = ("nearest", "pooled")


class EmptyCellWarning(UserWarning):
    """A predicted row fell in a (group, level) cell that had no fitting rows."""


class FairnessError(Pv4fadError):
    """Post-processing input is unusable (shapes, labels, a group missing a class)."""


def check_inputs(
    scores: np.ndarray, y: np.ndarray | None, group: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Validate at the edge: 1-d, equal lengths, labels in {0, 1}."""
    scores, group = np.asarray(scores, dtype=np.float64), np.asarray(group)
    if scores.ndim != 1 or group.ndim != 1 or len(scores) != len(group):
        raise FairnessError(
            f"{where}: expected 1-d scores and group of equal length, got shapes "
            f"{scores.shape} and {group.shape}"
        )
    if y is not None:
        y = np.asarray(y)
        if y.shape != scores.shape or not np.isin(y, (0, 1)).all():
            raise FairnessError(f"{where}: labels must be 0/1 with shape {scores.shape}")
        y = y.astype(np.int64)
    return scores, y, group


class EqualizedOddsPostProcessor:
    """scikit-learn-style: `fit(scores, y, group)`, `predict_proba(scores, group)` gives
    P(decision = 1), `predict(scores, group, random_state)` draws the decisions."""

    def __init__(
        self,
        monotone: bool = True,
        levels: np.ndarray | None = None,
        objective: str = "accuracy",
        fill: str = "nearest",
        tolerance: float = 0.0,
        fast: bool = True,
    ) -> None:
        self.fast = fast  # two groups at tolerance 0: the geometric solver (solve_two_groups)
        self.monotone = monotone
        self.levels = levels
        self.objective = objective
        self.fill = fill
        self.tolerance = tolerance

    def fit(
        self, scores: np.ndarray, y: np.ndarray, group: np.ndarray
    ) -> EqualizedOddsPostProcessor:
        if self.objective not in OBJECTIVES:
            raise FairnessError(
                f"equalized-odds objective {self.objective!r}: expected one of {OBJECTIVES}"
            )
        if not 0.0 <= self.tolerance <= 1.0:
            raise FairnessError(
                f"equalized-odds tolerance {self.tolerance}: expected a number in [0, 1]"
            )
        if self.fill not in FILLS:
            raise FairnessError(f"equalized-odds fill {self.fill!r}: expected one of {FILLS}")
        scores, labels, group = check_inputs(scores, y, group, "equalized-odds fit")
        y = np.asarray(labels)
        self.levels_ = np.unique(scores) if self.levels is None else np.asarray(self.levels, float)
        self.groups_ = np.unique(group)
        counts = np.zeros((len(self.groups_), len(self.levels_), 2))
        np.add.at(counts, (self._group_index(group), self._level_index(scores), y), 1.0)
        self.counts_ = counts
        self._refit()
        return self

    def _group_index(self, group: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.groups_, group)

    def _refit(self) -> None:
        """Check every group still has both labels, solve the LP, decide empty cells."""
        missing = np.add.reduce(self.counts_, axis=1) == 0  # per (group, label)
        if missing.any():
            g, label = np.argwhere(missing)[0]
            kind = "positive" if label else "negative"
            raise FairnessError(
                f"equalized-odds fit: group {self.groups_[g].item()!r} has no {kind} labels, so "
                "its TPR/FPR is undefined; merge it or add data"
            )
        self.p_ = self._fill(self._solve(self.counts_), self.counts_)

    def update_counts(
        self, scores: np.ndarray, y: np.ndarray, group: np.ndarray, sign: float,
        resolve: bool = True,
    ) -> EqualizedOddsPostProcessor:
        """Add (sign = +1) or remove (sign = -1) rows from the fitted cell counts and re-solve;
        equal to refitting on the changed rows, at the cost of the changed rows only."""
        scores, labels, group = check_inputs(scores, y, group, "equalized-odds update")
        known = np.isin(group, self.groups_)
        if not known.all():
            raise FairnessError(
                f"equalized-odds update: groups {sorted(set(group[~known].tolist()))} were not "
                f"seen in fit (known: {self.groups_.tolist()})"
            )
        index = (self._group_index(group), self._level_index(scores), np.asarray(labels))
        np.add.at(self.counts_, index, float(sign))
        if (self.counts_ < -1e-9).any():
            raise FairnessError("equalized-odds update: removed rows that were never counted")
        if resolve:  # several updates in a row re-solve once, at the last
            self._refit()
        return self

    def _fill(self, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Decide the cells with no fitting rows (the LP leaves them arbitrary)."""
        seen = counts.sum(axis=2) > 0
        self.empty_ = ~seen
        if seen.all():  # the usual case after a forget: nothing to decide
            return p
        # Per cell, the nearest seen level below and above in its group (every group has
        # seen some level: `_refit` checked it has rows); the nearer one's decision, or the
        # mean of the two when equally near. All cells at once: no loop per empty cell.
        n_levels = p.shape[1]
        positions = np.arange(n_levels)
        below = np.maximum.accumulate(np.where(seen, positions, -n_levels), axis=1)
        above = np.minimum.accumulate(np.where(seen, positions, 2 * n_levels)[:, ::-1],
                                      axis=1)[:, ::-1]
        rows = np.arange(p.shape[0])[:, None]
        low = p[rows, np.clip(below, 0, None)]
        high = p[rows, np.clip(above, None, n_levels - 1)]
        gap_low, gap_high = positions - below, above - positions
        nearest = np.where(gap_low < gap_high, low,
                           np.where(gap_high < gap_low, high, (low + high) / 2))
        if self.fill == "nearest":
            return nearest
        filled = nearest.copy()
        weight = counts.sum(axis=2)
        for g, k in zip(*np.nonzero(~seen), strict=True):
            if weight[:, k].sum() > 0:
                filled[g, k] = float(np.average(p[:, k], weights=weight[:, k]))
        return filled

    def _level_index(self, scores: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.levels_, scores, side="right") - 1
        return np.clip(index, 0, len(self.levels_) - 1)

    def _solve(self, counts: np.ndarray) -> np.ndarray:
        """The LP over p[g, k] (flattened row-major); returns p with shape (G, K)."""
        n_groups, n_levels, _ = counts.shape
        # Weight of one false positive / false negative in the expected loss.
        if self.objective == "balanced_accuracy":
            w_neg, w_pos = 0.5 / counts[:, :, 0].sum(), 0.5 / counts[:, :, 1].sum()
        else:
            w_neg = w_pos = 1.0 / counts.sum()
        cost = (w_neg * counts[:, :, 0] - w_pos * counts[:, :, 1]).ravel()
        # Two groups at tolerance 0: the geometric solver, for any map, and for monotone maps
        # over given discrete levels (FairSISA (a), (b)); free-valued scores keep HiGHS.
        geometric = not self.monotone or self.levels is not None
        if n_groups == 2 and geometric and self.tolerance == 0 and self.fast:
            fast = solve_two_groups(counts, w_neg, w_pos, self.monotone)
            if fast is not None:
                self.fit_score_ = float(
                    1.0 - ((cost * fast.ravel()).sum() + w_pos * counts[:, :, 1].sum())
                )
                return np.clip(fast, 0.0, 1.0)
        # Rate of level k among group g's positives (TPR weights) and negatives (FPR).
        tpr_w = counts[:, :, 1] / counts[:, :, 1].sum(axis=1, keepdims=True)
        fpr_w = counts[:, :, 0] / counts[:, :, 0].sum(axis=1, keepdims=True)
        equalities = []
        for weights in (tpr_w, fpr_w):
            for g in range(1, n_groups):
                row = np.zeros((n_groups, n_levels))
                row[g], row[0] = weights[g], -weights[0]
                equalities.append(row.ravel())
        inequalities = []
        if self.tolerance > 0:
            # |TPR_g - TPR_0| <= tolerance and the same for FPR: two inequalities per gap.
            bounds_rhs = []
            for row in equalities:
                inequalities += [row, -row]
                bounds_rhs += [self.tolerance, self.tolerance]
            equalities = []
        else:
            bounds_rhs = []
        if self.monotone:
            for g in range(n_groups):
                for k in range(n_levels - 1):
                    row = np.zeros((n_groups, n_levels))
                    row[g, k], row[g, k + 1] = 1.0, -1.0
                    inequalities.append(row.ravel())
        b_ub = np.concatenate([bounds_rhs, np.zeros(len(inequalities) - len(bounds_rhs))])
        result = linprog(
            cost,
            A_ub=np.array(inequalities) if inequalities else None,
            b_ub=b_ub if inequalities else None,
            A_eq=np.array(equalities) if equalities else None,
            b_eq=np.zeros(len(equalities)) if equalities else None,
            bounds=(0.0, 1.0),
            method="highs",
        )
        if not result.success:
            raise FairnessError(f"equalized-odds LP failed: {result.message}")
        # 1 - expected loss on the fitting data: (balanced) accuracy of the derived predictor.
        self.fit_score_ = float(1.0 - (result.fun + w_pos * counts[:, :, 1].sum()))
        return np.clip(result.x.reshape(n_groups, n_levels), 0.0, 1.0)

    def predict_proba(self, scores: np.ndarray, group: np.ndarray) -> np.ndarray:
        scores, _, group = check_inputs(scores, None, group, "equalized-odds predict")
        known = np.isin(group, self.groups_)
        if not known.all():
            raise FairnessError(
                f"equalized-odds predict: groups {sorted(set(group[~known].tolist()))} were not "
                f"seen in fit (known: {self.groups_.tolist()})"
            )
        g_index, level = self._group_index(group), self._level_index(scores)
        in_empty = self.empty_[g_index, level]
        # With free-valued scores (levels=None) a level seen only in another group is the
        # usual case, not a gap; the warning is for discrete outputs (votes, counts).
        if self.levels is not None and in_empty.any():
            cells = sorted({
                (self.groups_[g].item(), float(self.levels_[k]))
                for g, k in zip(g_index[in_empty], level[in_empty], strict=True)
            })
            warnings.warn(
                f"equalized-odds predict: {int(in_empty.sum())} rows fall in (group, level) "
                f"cells {cells[:5]} with no fitting rows; decided by fill={self.fill!r}",
                EmptyCellWarning,
                stacklevel=2,
            )
        return self.p_[g_index, level]

    def predict(
        self, scores: np.ndarray, group: np.ndarray, random_state: int | None = None
    ) -> np.ndarray:
        proba = self.predict_proba(scores, group)
        return (np.random.default_rng(random_state).random(len(proba)) < proba).astype(np.int64)

    def score(self, scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
        """Expected accuracy of the randomised decisions."""
        return accuracy(y, self.predict_proba(scores, group))


def _next(polygon: np.ndarray) -> np.ndarray:
    """Each vertex's successor (np.roll(polygon, -1, axis=0), at a fraction of its cost:
    this runs in every refit after a forget)."""
    return np.concatenate([polygon[1:], polygon[:1]])


_ROWS = np.arange(4)[:, None]  # the rows of `_chain_maps`: group g's maps are rows 2g, 2g + 1
_GROUP = np.array([0, 0, 1, 1])  # the group of each of those rows
_UP_DOWN = np.array([[-1.0], [1.0], [-1.0], [1.0]])  # sort keys: decreasing, increasing slope


def _upper_chains(
    fpr: np.ndarray, tpr: np.ndarray, up: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each group's upper zonotope boundary as the best TPR at each FPR: breakpoints
    (strictly increasing FPR, TPR), the cells added in decreasing slope (`up`, per group).
    A vertical first edge (cells without negatives) keeps only its top: the best TPR at
    FPR 0. An empty cell adds a repeated point, which goes with the other repeats."""
    x, y = np.zeros((2, fpr.shape[1] + 1)), np.zeros((2, fpr.shape[1] + 1))
    np.cumsum(fpr[_ROWS[:2], up], axis=1, out=x[:, 1:])
    np.cumsum(tpr[_ROWS[:2], up], axis=1, out=y[:, 1:])
    last = np.ones(x.shape, dtype=bool)
    np.not_equal(x[:, 1:], x[:, :-1], out=last[:, :-1])
    return [(x[g][last[g]], y[g][last[g]]) for g in range(2)]


def _best_common_rates(
    chains: list[tuple[np.ndarray, np.ndarray]], n_neg: float, n_pos: float, w_neg: float,
    w_pos: float,
) -> tuple[float, float]:
    """The optimal common (FPR, TPR) for two groups and any map, given their upper chains
    (`_upper_chains`). The cost falls as the TPR rises, and every FPR in [0, 1] is reachable
    by both groups (each zonotope holds the diagonal), so the optimum lies on the lower of
    the two upper chains, a concave piecewise-linear function of the FPR: at one of its
    breakpoints, i.e. a breakpoint of either chain or a crossing of the two. A
    one-dimensional search over those, which is what a refit after a forget pays."""
    (x1, y1), (x2, y2) = chains
    grid = np.concatenate((x1, x2))
    grid.sort()
    grid = grid[np.concatenate(([True], grid[1:] != grid[:-1]))]  # np.union1d, less overhead
    gap = np.interp(grid, x1, y1) - np.interp(grid, x2, y2)
    sign_change = np.flatnonzero(gap[:-1] * gap[1:] < 0)
    f = grid
    if len(sign_change):
        # Both chains are linear between neighbouring grid points: the crossing is exact.
        share = gap[sign_change] / (gap[sign_change] - gap[sign_change + 1])
        crossings = grid[sign_change] + share * (grid[sign_change + 1] - grid[sign_change])
        f = np.concatenate((grid, crossings))
    f = np.minimum(np.maximum(f, 0.0), 1.0)
    t = np.minimum(np.interp(f, x1, y1), np.interp(f, x2, y2))
    best = int(np.argmin(w_neg * n_neg * f - w_pos * n_pos * t))
    return float(f[best]), float(t[best])


def _inside(points: np.ndarray, polygon: np.ndarray, slack: float = 1e-10) -> np.ndarray:
    """Which points lie in the convex counter-clockwise polygon (on its edges included)."""
    a = polygon
    edge = _next(polygon) - a
    side = edge[None, :, 0] * (points[:, None, 1] - a[None, :, 1]) - edge[None, :, 1] * (
        points[:, None, 0] - a[None, :, 0]
    )
    return (side >= -slack).all(axis=1)


def _intersection_vertices(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Candidate vertices of the intersection of two convex polygons: each one's vertices
    inside the other, and the crossings of their edges (all pairs at once)."""
    p, r = first, _next(first) - first
    q, s = second, _next(second) - second
    cross = r[:, None, 0] * s[None, :, 1] - r[:, None, 1] * s[None, :, 0]
    diff = q[None, :, :] - p[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (diff[..., 0] * s[None, :, 1] - diff[..., 1] * s[None, :, 0]) / cross
        v = (diff[..., 0] * r[:, None, 1] - diff[..., 1] * r[:, None, 0]) / cross
    ok = (np.abs(cross) > 1e-15) & (u >= -1e-12) & (u <= 1 + 1e-12) & (v >= -1e-12) & (
        v <= 1 + 1e-12
    )
    i, j = np.nonzero(ok)
    crossings = p[i] + u[i, j, None] * r[i]
    candidates = np.vstack([first[_inside(first, second)], second[_inside(second, first)],
                            crossings])
    return candidates


def _chain_maps(fpr: np.ndarray, orders: np.ndarray, f: float) -> np.ndarray:
    """Per group, the maps on its upper (best) and lower (worst) boundary chains whose FPR
    is `f` (rows: group 0 upper, group 0 lower, group 1 upper, group 1 lower; `orders` the
    cells in slope order for each): cells taken whole in that order until the FPR reaches
    f, one of them partly. Cells without negatives (no FPR) are all taken on the upper
    chain and none on the lower."""
    step = fpr[_GROUP[:, None], orders]
    before = np.cumsum(step, axis=1) - step
    take = np.zeros(step.shape)
    take[::2] = 1.0
    np.divide(f - before, step, out=take, where=step != 0)
    np.minimum(np.maximum(take, 0.0, out=take), 1.0, out=take)
    maps = np.empty(step.shape)
    maps[_ROWS, orders] = take
    return maps


def _threshold_hull(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, ...]:
    """The set of (FPR, TPR) reachable by monotone maps: the convex hull of the thresholds
    "accept the top i levels", i = 0..K (monotone maps are exactly their mixtures). Returns
    the points, the lower and the upper hull chains (threshold indices, (0, 0) to (1, 1)),
    and the polygon (counter-clockwise)."""
    points = np.stack([np.concatenate([[0.0], np.cumsum(fpr[::-1])]),
                       np.concatenate([[0.0], np.cumsum(tpr[::-1])])], axis=1)
    points[-1] = (1.0, 1.0)  # exact, whatever the rounding of the sums

    def chain(turn: float) -> list[int]:
        # Andrew's monotone chain; the points are already sorted by (FPR, TPR).
        kept: list[int] = []
        for i, (x, y) in enumerate(points):
            while len(kept) >= 2:
                (ax, ay), (bx, by) = points[kept[-2]], points[kept[-1]]
                if turn * ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) > 1e-15:
                    break
                kept.pop()
            kept.append(i)
        return kept

    lower, upper = chain(1.0), chain(-1.0)
    polygon = points[lower + upper[::-1][1:-1]]
    return points, np.array(lower), np.array(upper), polygon


def _threshold_chain_map(
    points: np.ndarray, chain: np.ndarray, f: float, upper: bool
) -> np.ndarray:
    """The monotone map on the upper (best) or lower (worst) hull chain whose FPR is `f`:
    a mix of the two neighbouring thresholds. At an FPR the chain meets on a vertical
    edge, the upper chain takes its top and the lower chain its bottom."""
    n_levels = len(points) - 1
    xs = points[chain, 0]
    if upper:
        a = int(np.searchsorted(xs, f, side="right")) - 1
        b = min(a + 1, len(chain) - 1)
    else:
        b = int(np.searchsorted(xs, f, side="left"))
        b = min(b, len(chain) - 1)
        a = max(b - 1, 0)
    span = xs[b] - xs[a]
    share = 0.0 if span <= 0 else min(1.0, max(0.0, (f - xs[a]) / span))
    step = np.arange(n_levels)

    def threshold(i: int) -> np.ndarray:  # accept the top i levels
        return (step >= n_levels - i).astype(np.float64)

    if span <= 0:  # f lies on the vertex itself
        return threshold(int(chain[a] if upper else chain[b]))
    return share * threshold(int(chain[b])) + (1 - share) * threshold(int(chain[a]))


def solve_two_groups(
    counts: np.ndarray, w_neg: float, w_pos: float, monotone: bool = False
) -> np.ndarray | None:
    """The equalized-odds LP for two groups at tolerance 0, solved geometrically: the total
    cost is linear in the common (FPR, TPR), so the optimum is a vertex of the intersection
    of the two groups' reachable sets, and each group's map is a mix of its two boundary
    maps at that FPR. The reachable set is a zonotope for any map (the vertex is found on
    the upper chains, `_best_common_rates`), and the convex hull of the thresholds for
    monotone maps (`monotone=True`). Exact, and about a hundred times
    faster than the general LP, which makes re-fitting after a forget cheap. Returns None
    when the geometry is degenerate (the caller then uses the general LP)."""
    totals = counts.sum(axis=1)  # (group, label); cell counts are whole numbers: exact sums
    if (totals == 0).any():  # a group without one class: the LP raises for it
        return None
    if monotone:
        rates = [(counts[g, :, 0] / totals[g, 0], counts[g, :, 1] / totals[g, 1])
                 for g in range(2)]
        return _solve_two_groups_monotone(rates, counts, w_neg, w_pos)
    # Both groups at once (a refit after a forget pays for every numpy call): rates[0] is
    # the FPR and rates[1] the TPR of each (group, level) cell.
    fpr, tpr = counts.transpose(2, 0, 1) / totals.T[:, :, None]
    # Each group's cells by decreasing and by increasing slope (stable sorts): the orders
    # of its upper and lower boundary chains (rows as in `_chain_maps`).
    orders = np.argsort(np.arctan2(tpr, fpr)[_GROUP] * _UP_DOWN, axis=1, kind="stable")
    n_neg, n_pos = np.add.reduce(totals)
    f, t = _best_common_rates(_upper_chains(fpr, tpr, orders[::2]), n_neg, n_pos, w_neg, w_pos)
    maps = _chain_maps(fpr, orders, f)
    mix = np.zeros(2)
    for g in range(2):
        # BLAS's dot product rounds differently with the operands' memory alignment: fresh
        # arrays, as one-group arrays would be, keep the results reproducible.
        rate = tpr[g].copy()
        t_high, t_low = float(rate @ maps[2 * g].copy()), float(rate @ maps[2 * g + 1].copy())
        if t_high - t_low >= 1e-15:
            mix[g] = min(1.0, max(0.0, (t - t_low) / (t_high - t_low)))
    return mix[:, None] * maps[::2] + (1 - mix)[:, None] * maps[1::2]


def _solve_two_groups_monotone(
    rates: list[tuple[np.ndarray, np.ndarray]], counts: np.ndarray, w_neg: float, w_pos: float
) -> np.ndarray | None:
    """`solve_two_groups` for monotone maps (randomised thresholds)."""
    hulls = [_threshold_hull(fpr, tpr) for fpr, tpr in rates]
    region = _intersection_vertices(hulls[0][3], hulls[1][3])
    if len(region) == 0:
        return None
    n_neg, n_pos = counts[:, :, 0].sum(), counts[:, :, 1].sum()
    value = w_neg * n_neg * region[:, 0] - w_pos * n_pos * region[:, 1]
    f, t = region[int(np.argmin(value))]
    f = min(1.0, max(0.0, float(f)))
    maps = []
    for (_, tpr), (points, lower, upper, _) in zip(rates, hulls, strict=True):
        high = _threshold_chain_map(points, upper, f, True)
        low = _threshold_chain_map(points, lower, f, False)
        t_high, t_low = float(tpr @ high), float(tpr @ low)
        mix = 0.0 if t_high - t_low < 1e-15 else min(1.0, max(0.0, (t - t_low) / (t_high - t_low)))
        maps.append(mix * high + (1 - mix) * low)
    return np.stack(maps)
