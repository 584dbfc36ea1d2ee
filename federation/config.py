"""Run configuration of the PV4FAD protocol: read once, sent to every party as public data.

To a bank it is a request: the bank serves it only within its own privacy policy
(federation/policy.py) and computes its noise itself from the requested budget."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from federation.errors import Pv4fadError

INFERENCE_MODES = ("scores", "labels")
# What a bank can say about a beneficiary; index 0 is "ok" (exists, details match, flag 00).
STATUS_NAMES: tuple[str, ...] = ("ok", "missing", "mismatch", "flag_watch", "flag_block")
# What a bank reports in the protocol: the full status, or only whether anything is wrong.
# Fewer values mean randomized response at the same epsilon misreports fewer rows.
# (Here rather than in federation.features so that reading the configuration needs no
# pandas.)
REPORTED_STATUSES: dict[str, tuple[str, ...]] = {"full": STATUS_NAMES,
                                                 "coarse": ("ok", "not_ok")}


@dataclass(frozen=True)
class ProtocolConfig:
    """Public parameters every party sees.

    epsilon/delta: training budget for the bank-derived joint counts (per bank account).
    inference_epsilon: randomized response on every status a bank reports, drawn once per
      question (account and details) and kept, so asking again reveals nothing new (None:
      exact statuses, which the audit flags). Banks must run it at exactly this epsilon.
    inference_mode: "scores": the PNS receives the randomized statuses and scores every
      row; "labels": it receives only whether each row is flagged (score above
      label_threshold), computed by a two-party CrypTen comparison.
    cell_depth: depth of the PNS's tree that splits its rows into the cells of the
      status-aware table (at most 2^depth cells; 0: one cell). Few, large cells keep the DP
      noise small.
    status_detail: what a bank reports per row: "coarse" (ok / not ok) or "full" (the five
      statuses); coarse lowers the training sensitivity from sqrt(2) to 1 and makes
      randomized response at the same epsilon misreport a quarter as many rows.
    max_rows_per_account: training rows per beneficiary account that enter the counts;
      bounds the sensitivity of the counts to one account's bank record.
    plaintext: crypto switched off (kept only to measure the cost of privacy).
    """

    epsilon: float = 1.0
    delta: float = 1e-6
    inference_epsilon: float | None = 10.0
    cell_depth: int = 2
    status_detail: str = "coarse"
    max_rows_per_account: int = 1
    plaintext: bool = False
    seed: int = 0
    timeout_s: float = 900.0
    inference_mode: str = "scores"
    label_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise Pv4fadError(f"--epsilon must be a finite number > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise Pv4fadError(f"--delta must be in (0, 1), got {self.delta}")
        if self.inference_epsilon is not None and not (
                self.inference_epsilon > 0 and math.isfinite(self.inference_epsilon)):
            raise Pv4fadError(f"--inference-epsilon must be a finite number > 0 (or none), "
                              f"got {self.inference_epsilon}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise Pv4fadError(f"--timeout must be a finite number of seconds > 0, "
                              f"got {self.timeout_s}")
        if not 0 <= self.cell_depth <= 3 or self.max_rows_per_account < 1:
            raise Pv4fadError(f"--cell-depth must be in 0..3 and --max-rows-per-account >= 1, "
                              f"got {self.cell_depth} and {self.max_rows_per_account}")
        if self.inference_mode not in INFERENCE_MODES:
            raise Pv4fadError(f"--inference-mode must be one of {INFERENCE_MODES}, got "
                              f"{self.inference_mode!r}")
        if not 0 < self.label_threshold < 1:
            raise Pv4fadError(f"--label-threshold must be in (0, 1), got {self.label_threshold}")
        if self.status_detail not in REPORTED_STATUSES:
            raise Pv4fadError(f"--status-detail must be one of {sorted(REPORTED_STATUSES)}, "
                              f"got {self.status_detail!r}")

    @property
    def n_cells(self) -> int:
        return 2 ** self.cell_depth

    @property
    def n_statuses(self) -> int:
        return len(REPORTED_STATUSES[self.status_detail])

    def to_record(self) -> dict[str, Any]:
        """As Flower ConfigRecord values (no None)."""
        out = asdict(self)
        out["inference_epsilon"] = -1.0 if self.inference_epsilon is None else out[
            "inference_epsilon"]
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ProtocolConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        # Output privacy off: "none", as on the command line (a run config may also say
        # so with a negative number, the form Flower's records carry it in).
        off = values.get("inference_epsilon", None)
        if isinstance(off, str) and off.strip().lower() == "none":
            values["inference_epsilon"] = None
        elif isinstance(off, str):
            raise Pv4fadError(f"inference-epsilon must be a number or \"none\", got {off!r}")
        elif off is not None and off < 0:
            values["inference_epsilon"] = None
        return cls(**values)


@dataclass(frozen=True)
class TrainingNoise:
    """The Skellam noise on the joint counts: total variance (summed over the banks'
    shares) and the L2 / L1 sensitivity it is calibrated for."""

    variance: float
    l2: float
    l1: float


def training_noise(config: ProtocolConfig) -> TrainingNoise:
    """Noise of the training release, derived from the public configuration alone.

    Unit of privacy: one bank account record, added or removed. The PNS counts at most
    `max_rows_per_account` rows (c) per beneficiary account. With the coarse status only
    "not ok" counts are released ("ok" is the PNS's own row count minus them): adding or
    removing a record flips at most the c rows of its exact details between ok and not
    ok (other details of that account stay not ok: missing becomes mismatch), so L2 = L1 =
    c. With the full status each of those rows moves between two released counts: L2 =
    c sqrt(2), L1 = 2c. (Replacing one record by another is two such steps.)
    """
    from crypto.accountant import calibrate_skellam_variance

    c = config.max_rows_per_account
    l2, l1 = (float(c), float(c)) if config.n_statuses == 2 else (c * math.sqrt(2.0), 2.0 * c)
    variance = calibrate_skellam_variance(config.epsilon, config.delta, l2, l1_sensitivity=l1)
    return TrainingNoise(variance, l2, l1)
