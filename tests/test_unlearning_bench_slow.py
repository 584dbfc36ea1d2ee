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
