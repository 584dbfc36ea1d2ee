"""Plaintext baselines and the shared forest configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federation.baselines import (
    FOREST_MAX_SAMPLES,
    anomaly_forest,
    format_results,
    measured,
    run_baselines,
)
from federation.cli import main
from federation.data.generate import generate
from federation.errors import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("base") / "data", "tiny", seed=7)


def test_forest_configuration_bounds_cost() -> None:
    small, large = anomaly_forest(0, 5_000), anomaly_forest(0, 3_000_000)
    assert small.max_samples == 5_000 and large.max_samples == FOREST_MAX_SAMPLES
    assert large.n_jobs == 2 and large.n_estimators <= 100


def test_measured_reports_time_and_memory() -> None:
    result, seconds, peak = measured(lambda: np.ones((2_000, 10_000)).sum())
    assert result == 2e7 and seconds > 0 and peak > 50  # the 160 MB array was seen


def test_run_baselines_on_tiny(tiny: Path) -> None:
    result = run_baselines(tiny, "scenario02", seed=1)
    models = result["models"]
    assert set(models) == {"centralized_rf", "pns_only_rf", "centralized_hgb"}
    base_rate = result["test_anomalies"] / result["test_rows"]
    for m in models.values():
        assert 0 <= m["auprc"] <= 1 and m["fit_seconds"] > 0 and m["peak_mib"] >= 0
    # Far better than chance, and the bank status helps the ceiling.
    assert models["centralized_rf"]["auprc"] > 10 * base_rate
    assert models["centralized_rf"]["auprc"] >= models["pns_only_rf"]["auprc"]
    assert "centralized_rf" in format_results(result)


def test_cli_baseline_json_and_error(
    tiny: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    assert main(["baseline", "--data", str(tiny), "--scenario", "scenario01", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["scenario"] == "scenario01"
    assert main(["baseline", "--data", str(tiny), "--scenario", "nope"]) == 2
    assert "'nope' not listed" in capsys.readouterr().err


def test_unlabelled_test_stage_cannot_be_scored(tiny: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(tiny, tmp_path / "d"))
    path = data / "scenario01" / "test" / "swift" / "test.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["Label"])
    path.unlink()
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="no Label column"):
        run_baselines(data, "scenario01")
