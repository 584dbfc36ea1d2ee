"""Run configuration of the PV4FAD protocol: read once, sent to every party as public data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from federation.errors import Pv4fadError
from federation.features import REPORTED_STATUSES


@dataclass(frozen=True)
class ProtocolConfig:
    """Public parameters every party sees.

    epsilon/delta: training budget for the bank-derived joint counts (per bank account).
    inference_epsilon: output privacy: k-ary randomized response on each queried identity's
      status at test time (None: exact scores, which the audit flags).
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

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise Pv4fadError(f"--epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise Pv4fadError(f"--delta must be in (0, 1), got {self.delta}")
        if self.inference_epsilon is not None and not self.inference_epsilon > 0:
            raise Pv4fadError(f"--inference-epsilon must be > 0, got {self.inference_epsilon}")
        if not 0 <= self.cell_depth <= 3 or self.max_rows_per_account < 1:
            raise Pv4fadError(f"--cell-depth must be in 0..3 and --max-rows-per-account >= 1, "
                              f"got {self.cell_depth} and {self.max_rows_per_account}")
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
        if values.get("inference_epsilon", None) is not None and values["inference_epsilon"] < 0:
            values["inference_epsilon"] = None
        return cls(**values)
