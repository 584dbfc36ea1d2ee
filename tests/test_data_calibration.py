"""Scale run: the information split of the default data is calibrated as aimed.

On `default`, a PNS-only forest must stay at or below 0.75 AUPRC while the centralized
forest (bank status joined in the clear) reaches 0.95 or more, and every mechanism occurs;
a few minutes per seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.baselines import run_baselines
from federation.data.generate import GENERATOR_INFO, generate
from federation.data.payments import AnomalyMix


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_default_information_split(tmp_path: Path, seed: int) -> None:
    data = generate(tmp_path / "data", "default", seed)
    counts = json.loads((data / GENERATOR_INFO).read_text())["anomalous_rows_by_mechanism"]
    assert all(counts["train"][name] > 0 for name in AnomalyMix().names())
    models = run_baselines(data, "scenario01", seed=0)["models"]
    assert models["pns_only_rf"]["auprc"] <= 0.75
    assert models["centralized_rf"]["auprc"] >= 0.95
