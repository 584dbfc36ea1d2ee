"""`flwr run .` against a local simulation SuperLink (deploy/run_flwr_local.sh): the same
ServerApp and ClientApp as a deployment, no dependency installed at run time, the same
run directory as `pv4fad simulate`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "run_flwr_local.sh"


@pytest.mark.slow
def test_flwr_run_with_a_local_superlink_trains_and_scores(tmp_path: Path) -> None:
    from federation.data.generate import generate

    data = generate(tmp_path / "data", "tiny", 0)
    out = tmp_path / "out"
    done = subprocess.run([str(SCRIPT), "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert result["auprc"] == summary["auprc"] and 0 < summary["auprc"] <= 1
    assert set(summary["stages"]) == {"train", "test"}
    assert not any(summary["privacy_checks"].values())
    assert (out / "run" / "run.json").exists() and (out / "run" / "predictions.csv").exists()
    assert not (out / "run" / "training.incomplete").exists()
    log = (out / "logs" / "run.log").read_text()
    assert "answered after" in log  # the coordinator's per-party progress
    assert "Installing" not in log and "pip install" not in log  # nothing at run time
    # The SuperLink this script started is gone.
    left = subprocess.run(["pgrep", "-af", str(out / "flwr")], capture_output=True, text=True)
    assert [line for line in left.stdout.splitlines() if "pgrep" not in line] == []


def test_flwr_local_names_bad_data_before_starting(tmp_path: Path) -> None:
    from federation.data.generate import generate

    data = generate(tmp_path / "data", "tiny", 0)
    bad = sorted((data / "scenario01" / "train" / "bank01").glob("*.csv"))[0]
    bad.write_text(bad.read_text().replace("Flags", "Flagz", 1))
    done = subprocess.run([str(SCRIPT), "--data", str(data), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and str(bad) in last and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "flwr").exists()
