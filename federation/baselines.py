"""Plaintext baselines that the private protocol is measured against.

- centralized random forest: PNS features plus the bank status joined in the clear (ceiling);
- PNS-only random forest: the payment network's own features (floor);
- gradient boosting (HistGradientBoosting) on the centralized features, as a reference.

`anomaly_forest` is THE forest configuration used by baselines and the federated protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psutil
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import average_precision_score

from federation.cli import progress
from federation.data import loader, schema
from federation.errors import DataError
from federation.features import PNSFeaturizer, status_in_the_clear, status_onehot

T = TypeVar("T")
# Rows each tree sees: bounds fit time and memory at 3 M rows with little loss of AUPRC.
FOREST_MAX_SAMPLES = 200_000


def anomaly_forest(seed: int, n_rows: int) -> RandomForestClassifier:
    """The project's random forest for anomaly scores (fits 3 M x ~20 in about a minute)."""
    return RandomForestClassifier(
        n_estimators=100,
        max_samples=min(FOREST_MAX_SAMPLES, n_rows) if n_rows > 0 else None,
        min_samples_leaf=3,
        max_features=0.5,
        n_jobs=2,
        random_state=seed,
    )


def gradient_boosting(seed: int) -> HistGradientBoostingClassifier:
    """The gradient-boosting reference.

    L2 regularisation is needed: at a 0.1 % positive rate the Newton leaf values of
    unregularised boosting blow up and the model degrades with every iteration.
    """
    return HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


def measured(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Run fn; return (result, seconds, peak resident memory above the start, MiB).

    On Linux the kernel's own high-water mark is reset before and read after (exact, even
    for a short-lived allocation; the process's own peak, as getrusage reports it, then
    counts from here); elsewhere the resident size is sampled every 20 ms.
    """
    process = psutil.Process()
    start_rss = process.memory_info().rss
    exact = _reset_peak_rss()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss, _peak_rss() if exact else 0)
    return result, seconds, (peak[0] - start_rss) / 2**20


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident size (Linux: VmHWM); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _peak_rss() > 0
    except OSError:
        return False


def _peak_rss() -> int:
    """The kernel's peak resident size of this process in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _scenario_frames(root: Path, scenario: str, stage: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    tx = loader.load_transactions(root, scenario, stage)
    banks = [
        loader.load_bank_client(root, scenario, stage, cid)
        for cid in loader.partitions(root, scenario, stage)
        if cid != schema.PNS_CLIENT_ID
    ]
    return tx, pd.concat(banks, ignore_index=True)


def _fit_score(model: Any, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray):
    _, seconds, peak = measured(lambda: model.fit(x, y))
    score = model.predict_proba(x_test)[:, 1]
    return {
        "auprc": round(float(average_precision_score(y_test, score)), 4),
        "fit_seconds": round(seconds, 2),
        "peak_mib": round(peak, 1),
    }


def run_baselines(root: str | Path, scenario: str, seed: int = 0) -> dict[str, Any]:
    """Fit the three baselines on a scenario's train stage; score its test stage."""
    root = Path(root)
    progress(f"loading {scenario} from {root}")
    (train, train_banks), load_s, _ = measured(lambda: _scenario_frames(root, scenario, "train"))
    test, test_banks = _scenario_frames(root, scenario, "test")
    if "Label" not in test:
        raise DataError(f"{root / scenario}/test: no Label column (needed to score)")
    progress("computing features")
    featurizer = PNSFeaturizer()
    (x_pns, feat_s, feat_mib) = measured(lambda: featurizer.fit_transform(train))
    x_pns_test = featurizer.transform(test)
    x_full = np.hstack([x_pns, status_onehot(status_in_the_clear(train, train_banks))])
    x_full_test = np.hstack([x_pns_test, status_onehot(status_in_the_clear(test, test_banks))])
    y, y_test = train["Label"].to_numpy(), test["Label"].to_numpy()
    n = len(y)
    models = {}
    progress("fitting centralized random forest (ceiling)")
    models["centralized_rf"] = _fit_score(anomaly_forest(seed, n), x_full, y, x_full_test, y_test)
    progress("fitting PNS-only random forest (floor)")
    models["pns_only_rf"] = _fit_score(anomaly_forest(seed, n), x_pns, y, x_pns_test, y_test)
    progress("fitting gradient boosting (reference)")
    models["centralized_hgb"] = _fit_score(gradient_boosting(seed), x_full, y, x_full_test, y_test)
    return {
        "data": str(root),
        "scenario": scenario,
        "seed": seed,
        "train_rows": n,
        "test_rows": len(y_test),
        "train_anomalies": int(y.sum()),
        "test_anomalies": int(y_test.sum()),
        "load_seconds": round(load_s, 2),
        "feature_seconds": round(feat_s, 2),
        "feature_peak_mib": round(feat_mib, 1),
        "models": models,
    }


def format_results(result: dict[str, Any]) -> str:
    """Human-readable table of `run_baselines` output."""
    lines = [
        f"{result['scenario']}: {result['train_rows']} train rows ({result['train_anomalies']} "
        f"anomalous), {result['test_rows']} test rows ({result['test_anomalies']} anomalous)",
        f"{'model':<18}{'test AUPRC':>12}{'fit s':>10}{'peak MiB':>10}",
    ]
    for name, m in result["models"].items():
        lines.append(
            f"{name:<18}{m['auprc']:>12.4f}{m['fit_seconds']:>10.2f}{m['peak_mib']:>10.1f}"
        )
    return "\n".join(lines)
