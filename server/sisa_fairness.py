"""FairSISA comparison: a single model, the SISA ensemble, and equalized-odds
post-processing of the ensemble in three ways, on held-out rows, over several seeds.

Per seed the data is split 50/25/25 into train / calibration / test (stratified by label);
models train on train, post-processors fit on calibration, everything is scored on test.
Reported metrics are exact expectations of the randomised decisions (see
llm_modules.fairness.metrics).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from federation.sisa.data import load_dataset
from llm_modules.fairness import EqualizedOddsPostProcessor, FairSISA, fairness_report
from llm_modules.fairness.fairlearn_check import FairlearnEqualizedOdds
from server.sisa import LocalTransport, SisaConfig, SisaCoordinator

METHODS = (
    "single model",
    "single + EO (LP)",
    "single + EO (fairlearn)",
    "SISA majority vote",
    "SISA mean probability",
    "FairSISA (a) per constituent",
    "FairSISA (b) aggregate",
    "FairSISA (c) vote count",
)
METRICS = (
    "accuracy", "balanced_accuracy", "equalized_odds_difference", "demographic_parity_difference"
)


@dataclass(frozen=True)
class FairnessSetup:
    dataset: str = "german"
    sensitive: str = "sex"
    shards: int = 5
    slices: int = 4
    learner: str = "sgd"
    epochs: int = 5
    objective: str = "accuracy"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


def _train_and_score(
    setup: FairnessSetup, shards: int, slices: int, seed: int, root: Path, rows: list[np.ndarray]
) -> list[np.ndarray]:
    """Train a (one-shard when shards == 1) SISA model in-process; P(y=1) per shard for rows."""
    config = SisaConfig(
        setup.dataset, shards, slices, min(shards, 4), setup.learner, setup.epochs, seed, seed
    )
    coordinator = SisaCoordinator(root, LocalTransport(root, config.clients))
    coordinator.train(config)
    data = load_dataset(setup.dataset)
    return [coordinator.predict(data.features[ids]).proba for ids in rows]


def _reports(y: np.ndarray, decisions: list[np.ndarray], group: np.ndarray) -> dict[str, Any]:
    pairs = zip(METHODS, decisions, strict=True)
    return {name: fairness_report(y, d, group) for name, d in pairs}


def run_seed(setup: FairnessSetup, seed: int, root: Path) -> dict[str, Any]:
    """Test-set reports of every method for one seed, plus the LP-vs-fairlearn check."""
    data = load_dataset(setup.dataset)
    if setup.sensitive not in data.groups:
        raise Pv4fadError(
            f"dataset {setup.dataset!r} has no group {setup.sensitive!r}: "
            f"expected one of {sorted(data.groups)}"
        )
    split = data.split(seed)
    cal, test = split["calib"], split["test"]
    y_cal, y_test = data.labels[cal], data.labels[test]
    g_cal, g_test = data.groups[setup.sensitive][cal], data.groups[setup.sensitive][test]
    votes_cal, votes_test = _train_and_score(
        setup, setup.shards, setup.slices, seed, root / f"sisa_{seed}", [cal, test]
    )
    single_cal, single_test = (
        p[:, 0] for p in _train_and_score(setup, 1, 1, seed, root / f"single_{seed}", [cal, test])
    )
    objective = setup.objective
    lp = EqualizedOddsPostProcessor(objective=objective).fit(single_cal, y_cal, g_cal)
    reference = FairlearnEqualizedOdds(objective).fit(single_cal, y_cal, g_cal)
    post = [
        FairSISA(method, objective=objective).fit(votes_cal, y_cal, g_cal)
        for method in ("constituent", "aggregate", "votes")
    ]

    def decisions(single: np.ndarray, votes: np.ndarray, group: np.ndarray) -> list[np.ndarray]:
        """Each method's P(decision = 1), in METHODS order."""
        return [
            (single >= 0.5).astype(float),
            lp.predict_proba(single, group),
            reference.predict_proba(single, group),
            (2 * (votes >= 0.5).sum(1) > votes.shape[1]).astype(float),
            (votes.mean(axis=1) >= 0.5).astype(float),
        ] + [p.predict_proba(votes, group) for p in post]

    on_test = decisions(single_test, votes_test, g_test)
    on_cal = decisions(single_cal, votes_cal, g_cal)
    return {
        "seed": seed,
        "test": _reports(y_test, on_test, g_test),
        "calibration": _reports(y_cal, on_cal, g_cal),
        "lp_vs_fairlearn": {
            "objective": objective,
            "lp_on_calibration": lp.fit_score_,
            "fairlearn_on_calibration": fairness_report(y_cal, on_cal[2], g_cal)[objective],
            "test_decision_max_abs_diff": float(np.abs(on_test[1] - on_test[2]).max()),
        },
    }


def run_fairness(setup: FairnessSetup, workdir: Path | None = None) -> dict[str, Any]:
    """All seeds; medians per method and metric; how often (c) has the smallest test EOD."""
    with tempfile.TemporaryDirectory(prefix="pv4fad-fairsisa-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        runs = [run_seed(setup, seed, root) for seed in setup.seeds]
    medians = {
        name: {m: float(np.median([r["test"][name][m] for r in runs])) for m in METRICS}
        for name in METHODS
    }
    calibration_eod = {
        name: float(np.median([r["calibration"][name]["equalized_odds_difference"] for r in runs]))
        for name in METHODS
    }
    post = METHODS[5:]
    c_best = sum(
        min(post, key=lambda n, r=r: r["test"][n]["equalized_odds_difference"]) == post[2]
        for r in runs
    )
    return {
        "setup": asdict(setup), "medians": medians, "calibration_eod": calibration_eod,
        "runs": runs,
        "c_smallest_eod_seeds": int(c_best),
    }


def render_table(result: dict[str, Any]) -> str:
    """A markdown table of the medians."""
    lines = [
        "| method | accuracy | balanced acc. | EOD | DPD | EOD on calibration |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["medians"].items():
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} "
            f"| {row['equalized_odds_difference']:.3f} "
            f"| {row['demographic_parity_difference']:.3f} "
            f"| {result['calibration_eod'][name]:.3f} |"
        )
    return "\n".join(lines)
