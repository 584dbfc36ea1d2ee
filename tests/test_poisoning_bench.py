"""The sweep saves each cell, resumes without rerunning saved cells, and renders its report."""

import json

import pytest
import torch

from llm_modules.poisoning.bench import Sweep, cells, key, run_sweep, summarise
from llm_modules.poisoning.finetune import FinetuneConfig
from llm_modules.poisoning.report import render
from llm_modules.poisoning.tasks import TaskConfig


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; more only contend on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_sweep_resumes_and_reports(tmp_path):
    sweep = Sweep(tasks=("completion",), triggers=("rare",), virtual_tokens=(2,), rates=(0.1,),
                  compare_methods=(),
                  finetune=FinetuneConfig(epochs=1, batch_size=8),
                  task_sizes=TaskConfig(pretrain=40, finetune=20, test=6))
    assert [c["rate"] for c in cells(sweep)] == [0.0, 0.1]
    results = tmp_path / "results.json"
    logs = []
    # two worker processes (one cell each), then a resume in this process
    saved = run_sweep(sweep, results, cache=tmp_path / "cache", log=logs.append, workers=2)
    assert set(saved["cells"]) == {key(c) for c in cells(sweep)}
    on_disk = json.loads(results.read_text())
    assert on_disk["cells"].keys() == saved["cells"].keys() and on_disk["wall_seconds"] > 0
    assert on_disk["workers"] == 2
    poisoned = saved["cells"][key(cells(sweep)[1])]["metrics"]
    assert poisoned["training_filter"]["onion"]["detection_rate"] in (0.0, 0.5, 1.0)
    run_sweep(sweep, results, cache=tmp_path / "cache", log=logs.append)
    assert logs[-1].startswith("0 of 2 cells to run")
    (row_clean, row_poisoned) = sorted(summarise(saved), key=lambda r: r["rate"])
    assert row_clean["d_rougeL"] == 0.0  # the clean model against itself
    text = render(saved, tmp_path / "figures", "bench")
    assert "| completion | prefix | 2 | rare | 10.0 % |" in text
    assert (tmp_path / "figures" / "poisoning_completion.png").is_file()
