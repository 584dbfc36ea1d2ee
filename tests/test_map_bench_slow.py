"""Scale run: the quick MAP benchmark end to end and its rendered section (excluded by
default)."""

from __future__ import annotations

import pytest

from llm_modules.alignment.map.bench import FEASIBLE, INFEASIBLE, quick_settings, run_benchmark
from llm_modules.alignment.map.bench_render import render


@pytest.mark.slow
def test_quick_benchmark(tmp_path):
    result = run_benchmark(quick_settings(), tmp_path / "lm", tmp_path / "scratch")
    palettes = result["per_seed"][0]["palettes"]
    for name in FEASIBLE:
        for row in palettes[name]["solve"].values():
            assert row["feasible"] and row["scipy_max_relative_difference"] < 1e-3
    for name in INFEASIBLE:
        for row in palettes[name]["solve"].values():
            assert not row["feasible"] and row["verdict"]["reason"]
    assert result["timing"]["pooled"]["feasible"]
    section = render(result)
    assert section.startswith("## MAP") and "| q70 | positiveness |" in section
