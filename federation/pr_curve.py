"""The precision-recall figure `pv4fad simulate` writes when the test data has labels:
the private protocol's scores beside the PNS-only forest (the floor: the payment network
alone) and a centralized forest that sees the banks' statuses in the clear (the ceiling).

A simulation's operator runs every party, so it may read the PNS's kept scores and fit
the centralized forest; a deployment has no such operator, and no such figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federation.messages import PNS_ID

FIGURE = "pr_curve.png"


def write_pr_curve(run_dir: Path, data_root: Path, scenario: str, seed: int,
                   progress: Any) -> dict[str, float] | None:
    """Write RUN_DIR/pr_curve.png; returns each curve's AUPRC, or None without labels or
    scores (label mode, or a test set without a Label column)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    stage = run_dir / "parties" / PNS_ID / "test"
    predictions = run_dir / "predictions.csv"
    if not (stage / "scores.npz").exists() or not predictions.exists():
        return None
    scored = pd.read_csv(predictions)
    if "Score" not in scored:
        return None  # label mode: flags, not scores
    with np.load(stage / "scores.npz", allow_pickle=False) as arrays:
        labels, pns_only = arrays["label"], arrays["score"].sum(axis=1)
    if not ((labels >= 0).all() and labels.any()):
        return None
    progress("precision-recall curve: fitting the centralized forest (ceiling)")
    centralized = _centralized(data_root, scenario, seed, scored["MessageId"])
    curves = {"private protocol": scored["Score"].to_numpy(), "PNS only": pns_only,
              "centralized (in the clear)": centralized}
    auprc = {name: round(float(average_precision_score(labels, s)), 4)
             for name, s in curves.items()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (name, score), style in zip(curves.items(), ("-", ":", "--"), strict=True):
        precision, recall, _ = precision_recall_curve(labels, score)
        ax.plot(recall, precision, style, drawstyle="steps-post",
                label=f"{name}: AUPRC {auprc[name]:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{scenario}: {len(labels)} test rows, {int(labels.sum())} anomalous")
    ax.legend(loc="lower left")
    fig.tight_layout()
    tmp = run_dir / f".{FIGURE}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(run_dir / FIGURE)
    return auprc


def _centralized(data_root: Path, scenario: str, seed: int, message_ids: pd.Series
                 ) -> np.ndarray:
    """Scores of the centralized forest (baselines.py's ceiling) in the PNS's row order."""
    from federation.baselines import _scenario_frames, anomaly_forest
    from federation.features import PNSFeaturizer, status_in_the_clear, status_onehot

    train, train_banks = _scenario_frames(data_root, scenario, "train")
    test, test_banks = _scenario_frames(data_root, scenario, "test")
    featurizer = PNSFeaturizer()
    x = np.hstack([featurizer.fit_transform(train),
                   status_onehot(status_in_the_clear(train, train_banks))])
    x_test = np.hstack([featurizer.transform(test),
                        status_onehot(status_in_the_clear(test, test_banks))])
    forest = anomaly_forest(seed, len(train)).fit(x, train["Label"].to_numpy())
    score = pd.Series(forest.predict_proba(x_test)[:, 1], index=test["MessageId"].to_numpy())
    return score.loc[message_ids.to_numpy()].to_numpy()
