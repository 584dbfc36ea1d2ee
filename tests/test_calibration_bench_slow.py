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


@pytest.mark.slow
def test_task_command_writes_files_that_the_other_commands_take(tmp_path, capsys):
    out = tmp_path / "task"
    assert federation_cli.main(["llm", "calibrate", "task", "--out", str(out), "--data-dir",
                                str(tmp_path / "models"), "--json"]) == 0
    capsys.readouterr()
    assert federation_cli.main([
        "llm", "calibrate", "probs", "--model", str(out / "model"), "--prompt",
        str(out / "prompts" / "sentiment.json"), "--data", str(out / "test.jsonl"),
        "--pool", str(out / "pool.jsonl"), "--shots", "4", "--out", str(tmp_path / "p.json"),
        "--json"]) == 0
    result = json.loads(capsys.readouterr()[0])
    assert result["examples"] == 300 and sum(result["predicted_counts"].values()) == 300
