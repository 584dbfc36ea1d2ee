"""The privacy accountant and release ledger (Renyi DP, via Google's dp-accounting).

Every DP release goes through `PrivacyAccountant.record`, which keeps the release
(mechanism, sensitivity, noise scale, releasing party, what was released, data subject)
and writes it into the party's TranscriptLedger. `epsilon(delta)` composes all releases of
the run; `epsilon(delta, data_subject=s)` composes only those that touch subject s
(releases recorded with data_subject="*" touch everyone). Neighbouring datasets differ in
one data subject's records (replace-one); sensitivities are stated by the caller for it.

Gaussian and randomized-response RDP curves come from dp-accounting's RdpAccountant; the
Skellam curve is Agarwal, Kairouz & Liu (NeurIPS 2021), Corollary 3.6, at integer orders.
The (epsilon, delta) conversion is dp-accounting's `compute_epsilon`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from federation.errors import Pv4fadError
from federation.transcript import TranscriptLedger

ALL_SUBJECTS = "*"
MECHANISMS = ("gaussian", "skellam", "randomized_response")
_REL = dp_accounting.NeighboringRelation.REPLACE_ONE


@dataclass(frozen=True)
class Release:
    """One DP release.

    noise_scale: sigma (gaussian), variance (skellam) or epsilon (randomized_response).
    sensitivity: L2 sensitivity (gaussian, skellam); 1 for randomized response.
    l1_sensitivity: Skellam only; defaults to sensitivity^2 (integer-valued queries).
    count: how many identical releases this entry stands for.
    buckets: randomized response only: the number of categories (k-ary RR).
    """

    mechanism: str
    sensitivity: float
    noise_scale: float
    releasing_party: str
    released: str
    data_subject: str = ALL_SUBJECTS
    count: int = 1
    l1_sensitivity: float | None = None
    buckets: int = 2
    phase: str = "dp"
    round: int = 0


def skellam_rdp(orders: np.ndarray, variance: float, l2: float, l1: float) -> np.ndarray:
    """RDP of the Skellam mechanism at each order (inf at non-integer orders)."""
    out = np.full(len(orders), np.inf)
    for i, alpha in enumerate(orders):
        if alpha > 1 and float(alpha).is_integer():
            out[i] = alpha * l2**2 / (2 * variance) + min(
                ((2 * alpha - 1) * l2**2 + 6 * l1) / (4 * variance**2), 3 * l1 / (2 * variance)
            )
    return out


def _dp_event(release: Release) -> dp_accounting.DpEvent:
    if release.mechanism == "gaussian":
        event = dp_accounting.GaussianDpEvent(release.noise_scale / release.sensitivity)
    else:
        # dp-accounting's RR: with probability p report a uniform bucket (the true one too),
        # so k-ary RR at epsilon has p = k / (e^eps + k - 1); for k = 2 that is 2 / (1 + e^eps).
        k = release.buckets
        p = k / (math.exp(release.noise_scale) + k - 1)
        event = dp_accounting.RandomizedResponseDpEvent(p, k)
    return dp_accounting.SelfComposedDpEvent(event, release.count)


class PrivacyAccountant:
    """Records DP releases of one party and answers epsilon at delta (whole run or subject)."""

    def __init__(self, ledger: TranscriptLedger | None = None) -> None:
        self.ledger = ledger
        self.orders = np.array(rdp_lib.DEFAULT_RDP_ORDERS, dtype=np.float64)
        self._releases: list[Release] = []
        self._curves: list[np.ndarray] = []

    @property
    def releases(self) -> list[Release]:
        return list(self._releases)

    def record(self, release: Release) -> Release:
        """Validate, account and log one release; returns it."""
        if release.mechanism not in MECHANISMS:
            raise Pv4fadError(f"accountant: unknown mechanism {release.mechanism!r}, "
                              f"expected one of {MECHANISMS}")
        for name in ("sensitivity", "noise_scale"):
            value = getattr(release, name)
            if not (value > 0 and math.isfinite(value)):
                raise Pv4fadError(f"accountant: {name} of {release.released!r} must be > 0")
        if release.count < 1:
            raise Pv4fadError(f"accountant: count of {release.released!r} must be >= 1")
        self._curves.append(self._curve(release))
        self._releases.append(release)
        if self.ledger is not None:
            self.ledger.record_release(phase=release.phase, round=release.round,
                                       details=asdict(release))
        return release

    def _curve(self, release: Release) -> np.ndarray:
        if release.mechanism == "skellam":
            l1 = release.l1_sensitivity or release.sensitivity**2
            single = skellam_rdp(self.orders, release.noise_scale, release.sensitivity, l1)
            return release.count * single
        accountant = rdp_lib.RdpAccountant(self.orders, _REL)
        accountant.compose(_dp_event(release))
        return accountant.rdp

    def subjects(self) -> list[str]:
        return sorted({r.data_subject for r in self._releases} - {ALL_SUBJECTS})

    def rdp(self, data_subject: str | None = None) -> np.ndarray:
        """Summed RDP curve over the releases that touch `data_subject` (None: all)."""
        total = np.zeros(len(self.orders))
        for release, curve in zip(self._releases, self._curves, strict=True):
            if data_subject is None or release.data_subject in (ALL_SUBJECTS, data_subject):
                total = total + curve
        return total

    def epsilon(self, delta: float, data_subject: str | None = None) -> float:
        """Epsilon at `delta` for the whole run (None) or one data subject."""
        if not 0 < delta < 1:
            raise Pv4fadError(f"accountant: delta must be in (0, 1), got {delta}")
        curve = self.rdp(data_subject)
        if not curve.any():
            return 0.0
        return float(rdp_lib.compute_epsilon(self.orders, curve, delta)[0])

    def max_subject_epsilon(self, delta: float) -> float:
        """The largest per-subject epsilon (the run's guarantee under parallel composition)."""
        subjects = self.subjects() or [ALL_SUBJECTS]
        return max(self.epsilon(delta, s) for s in subjects)


def _check_target(what: str, epsilon: float, delta: float, compositions: int) -> None:
    # An infinite epsilon would send the root finder off to a bracket it cannot find.
    if not (0 < epsilon < float("inf")) or not 0 < delta < 1 or compositions < 1:
        raise Pv4fadError(f"{what}: need a finite epsilon > 0, 0 < delta < 1 and compositions "
                          f">= 1, got epsilon {epsilon}, delta {delta}, compositions "
                          f"{compositions}")


def calibrate_gaussian_sigma(
    epsilon: float, delta: float, sensitivity: float = 1.0, compositions: int = 1
) -> float:
    """Smallest sigma whose `compositions`-fold Gaussian mechanism meets (epsilon, delta)."""
    _check_target("calibrate_gaussian_sigma", epsilon, delta, compositions)
    multiplier = dp_accounting.calibrate_dp_mechanism(
        lambda: rdp_lib.RdpAccountant(neighboring_relation=_REL),
        lambda z: dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), compositions),
        epsilon,
        delta,
    )
    return float(multiplier) * sensitivity


def calibrate_skellam_variance(
    epsilon: float, delta: float, sensitivity: float = 1.0, compositions: int = 1,
    l1_sensitivity: float | None = None,
) -> float:
    """Smallest Skellam variance whose `compositions`-fold release meets (epsilon, delta)."""
    _check_target("calibrate_skellam_variance", epsilon, delta, compositions)
    orders = np.array(rdp_lib.DEFAULT_RDP_ORDERS, dtype=np.float64)
    l1 = l1_sensitivity or sensitivity**2

    def eps_at(variance: float) -> float:
        curve = compositions * skellam_rdp(orders, variance, sensitivity, l1)
        return float(rdp_lib.compute_epsilon(orders, curve, delta)[0])

    low, high = 1e-6, 1.0
    while eps_at(high) > epsilon:
        low, high = high, high * 4
    for _ in range(100):  # bisection to relative precision far below 1e-9
        mid = (low + high) / 2
        low, high = (mid, high) if eps_at(mid) > epsilon else (low, mid)
    return high
