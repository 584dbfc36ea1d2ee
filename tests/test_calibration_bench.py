"""The benchmark on the built-in task, shrunk: the tiny LM trains and is cached, tuning
picks the best grid point on development seeds only, every part reports; the task
generator is seeded and balanced."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest
import torch

from llm_modules.calibration.bench import label_count_patterns, run_benchmark
from llm_modules.calibration.builtin import TaskModelConfig, build_task_model
from llm_modules.calibration.grid import BenchSettings, builtin_task
from llm_modules.calibration.scoring import LabelScorer
from llm_modules.calibration.task import CLASSES, CorpusConfig, corpus, task_splits
from llm_modules.models import TinyModelConfig

TINY = TaskModelConfig(model=TinyModelConfig(width=32, max_positions=128), documents=300,
                       steps=30, batch=8)
SETTINGS = BenchSettings(seeds=(0,), shots=(0, 4), sizes=(5,), test_size=30, permutations=2,
                         dev_seeds=(100,), lr_grid=(0.03, 0.3), linc_epochs=5, model=TINY)


def test_task_data_is_seeded_balanced_and_the_corpus_carries_its_biases():
    a, b = task_splits(3, test=30), task_splits(3, test=30)
    assert a == b and a.test != task_splits(4, test=30).test
    assert Counter(e.label for e in a.test) == {c: 10 for c in CLASSES}
    documents = corpus(CorpusConfig(), 400, seed=0)
    sentiment = " ".join(d for d in documents if d.startswith("Headline:"))
    words = Counter(sentiment.split())
    # The sentiment format's prior favours positive (60 %) over negative (15 %).
    assert words["positive"] + words["good"] > 2 * (words["negative"] + words["bad"])


def test_label_count_patterns_cover_each_class_alone_and_favoured():
    assert label_count_patterns(("a", "b", "c"), 4) == [
        {"a": 4, "b": 0, "c": 0}, {"a": 0, "b": 4, "c": 0}, {"a": 0, "b": 0, "c": 4},
        {"a": 2, "b": 1, "c": 1}, {"a": 1, "b": 2, "c": 1}, {"a": 1, "b": 1, "c": 2}]
    assert label_count_patterns(("a", "b"), 4) == [{"a": 4, "b": 0}, {"a": 0, "b": 4},
                                                   {"a": 2, "b": 2}]


def test_a_shrunk_builtin_benchmark_tunes_on_development_seeds_and_reports(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    kept = []
    try:
        task = builtin_task(SETTINGS, tmp_path, log=lambda _m: None)
        assert build_task_model(TINY, tmp_path) == task.model_path  # cached, not retrained
        result = run_benchmark(SETTINGS, task, LabelScorer(task.model_path),
                               keep=lambda partial: kept.append(list(partial)))
    finally:
        torch.set_num_threads(threads)
    grid = result["tuning"]["grid_accuracy"]  # "size/shots/lr" -> mean dev accuracy
    for shots in ("0", "4"):
        points = {key: value for key, value in grid.items() if key.startswith(f"5/{shots}/")}
        best = max(points, key=lambda key: (points[key], -float(key.split("/")[2])))
        assert result["tuning"]["lr"][f"5/{shots}"] == float(best.split("/")[2])
    assert set(result["summary"]) == {"0", "4"}
    zero = result["summary"]["0"]
    assert set(zero) == {"none", "contextual", "linc@5", "temperature@5", "platt@5"}
    # Temperature scaling never changes a prediction.
    assert zero["temperature@5"]["accuracy"] == zero["none"]["accuracy"]
    rows = result["rows"]["0"]
    assert set(rows) == {"sentiment", "outlook", "trade"}
    none = statistics.fmean(rows[t]["0"]["none"]["accuracy"] for t in rows)
    assert zero["none"]["accuracy"]["median"] == pytest.approx(none)
    assert set(result["sensitivity"]["permutations"]) == set(zero)
    assert set(result["diagrams"]) == {"0", "4"}
    # The result so far is handed over after every part.
    assert [keys[-1] for keys in kept] == ["tuning", "rows", "sensitivity", "diagrams"]
    assert "federated" not in result
