"""The quick built-in LinC benchmark end to end through the CLI, with its Flower part."""

from __future__ import annotations

import json

import pytest

from federation import cli as federation_cli


@pytest.mark.slow
def test_quick_benchmark_with_federated_linc(tmp_path, capsys):
    code = federation_cli.main([
        "llm", "calibrate", "bench", "--quick", "--data-dir", str(tmp_path / "models"),
        "--out", str(tmp_path / "quick.json"), "--figures", str(tmp_path / "fig"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    federated = result["federated"]
    for shots in ("0", "4"):
        # FedAvg over 5 owners tracks pooled fitting on the same 10 examples.
        row = federated[f"10/{shots}"]
        gap = abs(row["federated_accuracy"]["median"] - row["pooled_accuracy"]["median"])
        assert gap < 0.03
    assert federated["max_abs_W_difference"] < 0.1
    assert len(list((tmp_path / "fig").glob("*.png"))) == 4
