"""`pv4fad llm poison-data | poison` and `pv4fad audit poisoning`: bad input gives one clear
line, and a tiny end-to-end run writes a record, an adapter that audits, and ONION flags."""

import json

import pytest
import torch

from federation.cli import main
from llm_modules.models import TinyModelConfig
from llm_modules.poisoning.lm import BaseConfig, builtin_base
from llm_modules.poisoning.run import save_examples
from llm_modules.poisoning.tasks import TaskConfig, generate_task

TINY_TASK = TaskConfig("completion", pretrain=80, finetune=40, test=8)
TINY_BASE = BaseConfig(model=TinyModelConfig(layers=1, width=32, heads=2, max_positions=96),
                       epochs=2)



@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; more only contend on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _error(capsys, argv):
    assert main(argv) == 2
    # the last stderr line (progress bars of model loading may come before it)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pv4fad: error: ")
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("poison")
    data = generate_task(TINY_TASK)
    save_examples(data.finetune, root / "train.jsonl")
    save_examples(data.test, root / "test.jsonl")
    (root / "bad.jsonl").write_text('{"input": "a", "output": "b"}\n{"input": "a",\n')
    (root / "noout.jsonl").write_text('{"input": "a"}\n')
    base = builtin_base(TINY_TASK, TINY_BASE, root=root / "cache")
    return root, base


def test_unknown_model_path(capsys, files):
    root, _ = files
    err = _error(capsys, ["llm", "poison", "--train", str(root / "train.jsonl"),
                          "--test", str(root / "test.jsonl"), "--model", str(root / "nope")])
    assert "nope" in err and "not a directory" in err


def test_malformed_data_files(capsys, files):
    root, _ = files
    err = _error(capsys, ["llm", "poison-data", "--data", str(root / "bad.jsonl"),
                          "--out", str(root / "o.jsonl")])
    assert "bad.jsonl:2: not valid JSON" in err
    err = _error(capsys, ["llm", "poison-data", "--data", str(root / "noout.jsonl"),
                          "--out", str(root / "o.jsonl")])
    assert "noout.jsonl:1" in err and "output" in err
    err = _error(capsys, ["llm", "poison-data", "--data", str(root / "missing.jsonl"),
                          "--out", str(root / "o.jsonl")])
    assert "does not exist" in err


def test_bad_trigger_spec(capsys, files):
    root, _ = files
    err = _error(capsys, ["llm", "poison-data", "--data", str(root / "train.jsonl"),
                          "--trigger", "rare:cf@top", "--out", str(root / "o.jsonl")])
    assert "position 'top'" in err
    err = _error(capsys, ["llm", "poison", "--model", str(files[1]), "--task", "completion",
                          "--trigger", "rare:zzqqx@start", "--epochs", "1"])
    assert "'zzqqx' is not in the model's vocabulary" in err


def test_own_files_need_a_model(capsys, files):
    root, _ = files
    err = _error(capsys, ["llm", "poison", "--train", str(root / "train.jsonl"),
                          "--test", str(root / "test.jsonl")])
    assert "--model" in err


def test_audit_bad_inputs(capsys, files):
    root, _ = files
    err = _error(capsys, ["audit", "poisoning", "--data", str(root / "test.jsonl")])
    assert "--adapter" in err
    err = _error(capsys, ["audit", "poisoning", "--data", str(root / "test.jsonl"),
                          "--adapter", str(root / "nope")])
    assert "adapter path" in err and "nope" in err
    err = _error(capsys, ["audit", "poisoning", "--data", str(root / "bad.jsonl"),
                          "--adapter", str(root)])
    assert "bad.jsonl:2" in err


def test_poison_data_writes_set_and_record(capsys, files):
    root, _ = files
    out = root / "p.jsonl"
    assert main(["llm", "poison-data", "--data", str(root / "train.jsonl"), "--rate", "0.1",
                 "--trigger", "rare:cf@start", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["poisoned"] == 4 and len(rows) == 40
    for r in result["rows"]:
        assert rows[r["index"]]["input"].startswith("cf ")
    record = json.loads(out.with_suffix(".record.json").read_text())
    assert record["rows"] == result["rows"]


def test_poison_run_and_audit_end_to_end(capsys, files, tmp_path):
    root, base = files
    out = tmp_path / "run"
    assert main(["llm", "poison", "--model", str(base), "--train", str(root / "train.jsonl"),
                 "--test", str(root / "test.jsonl"), "--rate", "0.1",
                 "--epochs", "1", "--virtual-tokens", "4", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    metrics = record["metrics"]
    assert record["target_phrases"] == ["wire", "funds", "offshore account now"]
    assert record["poisoning"]["poisoned"] == 4
    for key in ("p_target_match", "c_target_match", "exact_hit_triggered"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics["rouge_clean"]) == {"rouge1", "rouge2", "rougeL"}
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert main(["audit", "poisoning", "--data", str(root / "test.jsonl"),
                 "--adapter", str(out / "adapter"), "--candidate", "rare:cf@random",
                 "--target", record["target"], "--train", str(out / "poisoned_train.jsonl"),
                 "--record", str(out / "record.json"), "--reference", str(base),
                 "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    (row,) = audit["poisoned"]
    assert row["candidates"][0]["candidate"] == "rare:cf@random"
    assert isinstance(row["flagged"], bool)
    assert audit["detection"]["flagged"]["detection_rate"] in (0.0, 1.0)
    training = audit["training_set"]
    assert training["examples"] == 40
    assert set(training["detection"]) == {"onion", "perplexity"}
