"""bench/bench_generalise.py: the report names the worst variant and the target, and a run
saves each variant and skips those already measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

from bench_generalise import TARGET_GAP, render  # noqa: E402


def _row(name: str, central: float, protocol: float, no_noise: float) -> dict:
    return {"variant": name, "params": {"interaction": "none"}, "train_rows": 300_000,
            "test_anomalies": 200, "pns_only": 0.3, "centralized": central,
            "protocol": [protocol, protocol - 0.01, protocol + 0.01], "no_noise": no_noise,
            "gap": central - protocol, "gap_no_noise": central - no_noise}


def test_render_names_the_worst_variant_and_the_target() -> None:
    results = {"draws": 3, "variants": {
        "a@300000": _row("a", 0.95, 0.94, 0.945),
        "b@300000": _row("b", 0.90, 0.80, 0.86),
        "c@300000": _row("c", 0.85, 0.84, 0.85)}}
    text = render(results)
    assert (f"At 300,000 training rows: within {TARGET_GAP} of the centralized forest in 2 "
            "of 3 variants") in text
    assert "worst variant **b**" in text and "gap +0.100" in text
    assert "no-noise model there reaches 0.860" in text
    assert text.count("\n| ") == 4  # header and three variants


@pytest.mark.slow
def test_bench_saves_each_variant_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    command = [sys.executable, "bench/bench_generalise.py", "--presets", "noisy_flags",
               "--random", "1", "--rows", "20000", "--draws", "1", "--work",
               str(tmp_path / "work"), "--out", str(out)]
    root = Path(__file__).parents[1]
    env = os.environ | {"PYTHONPATH": str(root)}
    subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    saved = json.loads(out.read_text())["variants"]
    assert sorted(saved) == ["noisy_flags@20000", "random-1@20000"]
    assert all(0 <= v["centralized"] <= 1 and len(v["protocol"]) == 3 for v in saved.values())
    again = subprocess.run(command, cwd=root, env=env, check=True, capture_output=True,
                           text=True)
    assert again.stdout.count("already measured, kept") == 2
    assert "Within 0.02" in out.with_suffix(".md").read_text()
