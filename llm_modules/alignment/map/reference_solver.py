"""An independent solution of MAP's dual, to check the palette solver against: scipy's
L-BFGS-B on the objective written out directly in raw reward units (no standardising, no
shared code with `dual.py`)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp


def scipy_lambda(
    rewards: np.ndarray, palette: np.ndarray, groups: np.ndarray | None = None
) -> np.ndarray:
    """argmax_{lambda >= 0} lambda . c - mean_x log mean_{j in x} exp(lambda . r_j)."""
    groups = np.zeros(len(rewards), dtype=int) if groups is None else np.asarray(groups)
    rows = [np.flatnonzero(groups == key) for key in np.unique(groups)]

    def negative_dual_and_gradient(lam: np.ndarray) -> tuple[float, np.ndarray]:
        scores = rewards @ lam
        value, levels = 0.0, np.zeros(rewards.shape[1])
        for members in rows:
            log_total = logsumexp(scores[members])
            value += log_total - np.log(len(members))
            levels += np.exp(scores[members] - log_total) @ rewards[members]
        return value / len(rows) - lam @ palette, levels / len(rows) - palette

    result = minimize(negative_dual_and_gradient, np.zeros(rewards.shape[1]), jac=True,
                      method="L-BFGS-B", bounds=[(0, None)] * rewards.shape[1],
                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
    return result.x
