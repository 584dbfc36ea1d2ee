"""The quick post-training benchmark end to end, and the task command (excluded by default)."""

from __future__ import annotations

import json
import time

import pytest

from federation.cli import main
from llm_modules.alignment.post_training_bench import JOINT, METHODS, run_benchmark
from llm_modules.alignment.post_training_report import plot_trajectories, summary_tables


@pytest.mark.slow
def test_quick_benchmark_runs_within_three_minutes(tmp_path):
    started = time.perf_counter()
    result = run_benchmark(quick=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 180, f"quick benchmark took {elapsed:.0f} s"
    (seed,) = result["per_seed"]
    runs, optimum = seed["runs"], seed["optimum"]
    for lam in (0.25, 0.5, 0.75):
        for method in METHODS:
            assert f"{method}@{lam:g}" in runs
    # The two objectives conflict: DPO alone and SFT->DPO undo SFT (held-out f_SFT far above
    # its optimum), DPO->SFT undoes DPO.
    assert runs["dpo@1"]["final_sft"] > 3 * optimum["sft_held_out"]
    assert runs["sft-then-dpo@0.5"]["final_sft"] > 3 * optimum["sft_held_out"]
    assert runs["dpo-then-sft@0.5"]["final_dpo"] > 1.5 * optimum["dpo_held_out"]
    assert set(result["summary"]["verdict"]) == {f"{m}@{lam:g}" for m in JOINT
                                                 for lam in (0.25, 0.5, 0.75)}
    assert "| 0.5 | alright |" in summary_tables(result)
    assert plot_trajectories(result, tmp_path / "plot.png").stat().st_size > 10_000


@pytest.mark.slow
def test_task_command_writes_files_that_post_train_accepts(tmp_path, capsys):
    assert main(["llm", "post-training-task", "--out", str(tmp_path), "--quick", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["files"]
    assert main(["llm", "post-train", "--model", written["model"], "--sft", written["sft"],
                 "--preference", written["preference"], "--steps", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["updates"]["sft"] >= 0
