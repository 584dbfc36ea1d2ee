"""Definitions of federated LinC shared by the owners, the coordinator and the benchmark:
a calibration job, the settings every owner receives, and the FedAvg step itself. The
Flower parties are clients/calibration_owner.py and server/calibration.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llm_modules.calibration.data import Example
from llm_modules.calibration.prompts import PromptSpec

Weights = dict[str, tuple[np.ndarray, np.ndarray]]  # job id -> (W, b)


@dataclass(frozen=True)
class CalibrationJob:
    """One prompt to calibrate: template and label words, demonstrations, p_cf, and the
    learning rate of LinC's SGD for it."""

    id: str
    prompt: PromptSpec
    demonstrations: tuple[Example, ...]
    p_cf: np.ndarray
    lr: float

    def to_json(self) -> dict:
        return {"id": self.id, "prompt": self.prompt.to_json(), "lr": self.lr,
                "demonstrations": [[d.text, d.label] for d in self.demonstrations]}


@dataclass(frozen=True)
class FederatedLinCConfig:
    """What the coordinator tells every owner. With equal shares, `local_epochs` equal to
    the number of owners makes one round move W and b about as far as one pooled epoch
    (each owner takes n/owners steps per epoch where pooled SGD takes n)."""

    model_path: str
    local_epochs: int = 5
    rounds: int = 15
    seed: int = 0
    cache_path: str = ""  # the owners' label-probability cache ("": each scores itself)
    transcript_dir: str = ""  # where each party writes its ledger ("": in memory only)


def weighted_mean(updates: Sequence[tuple[Mapping[str, tuple[np.ndarray, np.ndarray]],
                                          Mapping[str, int]]]) -> tuple[Weights, list[str]]:
    """FedAvg: per job, the example-count-weighted mean of the owners' (W, b); also the
    jobs no owner had examples for."""
    sums: dict[str, list] = {}
    for weights, counts in updates:
        for job_id, count in counts.items():
            entry = sums.setdefault(job_id, [0.0, 0.0, 0])
            if count:
                W, b = weights[job_id]
                entry[0] = entry[0] + count * W
                entry[1] = entry[1] + count * b
                entry[2] += count
    empty = sorted(job_id for job_id, (_, _, n) in sums.items() if n == 0)
    return {job_id: (W / n, b / n) for job_id, (W, b, n) in sums.items() if n}, empty


# A federated fit: (settings, jobs, each owner's examples per job id) -> W and b per job.
Federate = Callable[
    [FederatedLinCConfig, Sequence[CalibrationJob], Sequence[Mapping[str, Sequence[Example]]]],
    Weights,
]
