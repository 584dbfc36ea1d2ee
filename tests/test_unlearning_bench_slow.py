"""Scale run: one seed of the quick built-in benchmark, end to end (excluded by default)."""

from __future__ import annotations

import pytest

from llm_modules.unlearning.bench import run_benchmark


@pytest.mark.slow
def test_quick_benchmark_one_seed(tmp_path):
    result = run_benchmark(quick=True, seeds=1, root=tmp_path)
    rows = result["per_seed"][0]["test"]
    target, retain_only = rows["target"]["metrics"], rows["retain-only"]["metrics"]
    assert target["forget_probability"] > 0.9 > 0.3 > retain_only["forget_probability"]
    assert target["forget_rouge"] > retain_only["forget_rouge"] + 0.3
    # NPO forgets (forget quality >= 0.05 at some learning rate) and keeps some utility.
    assert result["utility_at_forgetting"]["npo"]["median"] > 0.3


@pytest.mark.slow
def test_builtin_assessment_end_to_end(tmp_path, capsys):
    import json

    from federation import cli as federation_cli

    code = federation_cli.main(["llm", "assess", "--builtin", "--method", "npo", "--lr",
                                "2e-4", "--data-dir", str(tmp_path / "cache"), "--out",
                                str(tmp_path / "report"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)["assessment"]
    assert set(result["generalisation"]) == {"paraphrased", "related"}
    assert result["efficiency"]["retraining"]["kind"].startswith("measured")
    relearned = result["robustness"]["relearning"]
    # NPO's facts come back faster than a model that never saw them learns them
    gain = {n: r["probability_after"] - r["probability_before"] for n, r in relearned.items()}
    assert gain["unlearned"] > gain["retain_model"]
