"""`pv4fad llm calibrate ...` end to end on a tiny model: probs -> fit -> evaluate, the
benchmark on user files, one JSON object with --json, and one-line errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from federation import cli as federation_cli
from llm_modules.calibration.data import Example, save_examples
from llm_modules.calibration.prompts import PromptSpec, save_prompt
from llm_modules.models import TinyModelConfig, save_causal_lm, tiny_causal_lm, word_level_tokenizer

WORDS = "good bad film plot acting dull great x y z".split()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    tokenizer = word_level_tokenizer([" ".join(WORDS) + " Review: Sentiment: => N/A [MASK]"])
    torch.manual_seed(0)
    model = tiny_causal_lm(TinyModelConfig(width=32, max_positions=128), tokenizer, seed=2)
    save_causal_lm(model.eval(), tokenizer, root / "model")
    rng = random.Random(0)

    def examples(n):
        out = []
        for _ in range(n):
            label = rng.choice(["neg", "pos"])
            cue = rng.choice(["great", "good"] if label == "pos" else ["dull", "bad"])
            out.append(Example(f"{rng.choice(['film', 'plot', 'acting'])} {cue} "
                               f"{rng.choice('xyz')}", label))
        return out

    for name, n in (("pool", 30), ("validation", 20), ("test", 40)):
        save_examples(examples(n), root / f"{name}.jsonl")
    save_prompt(PromptSpec("Review: {text} Sentiment: {label}",
                           {"neg": ("bad",), "pos": ("good", "great")}, separator=" ",
                           name="review"), root / "review.json")
    save_prompt(PromptSpec("{text} => {label}", {"neg": ("bad",), "pos": ("good",)},
                           separator=" ", name="arrow"), root / "arrow.json")
    return root


def run(argv, capsys):
    code = federation_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_probs_fit_evaluate_round_trip(files, capsys, tmp_path):
    base = ["llm", "calibrate"]
    for split in ("validation", "test"):
        code, out, _ = run([*base, "probs", "--model", str(files / "model"), "--prompt",
                            str(files / "review.json"), "--data", str(files / f"{split}.jsonl"),
                            "--pool", str(files / "pool.jsonl"), "--shots", "2", "--seed", "3",
                            "--cache", str(tmp_path / "c.sqlite"), "--out",
                            str(tmp_path / f"{split}.json"), "--json"], capsys)
        assert code == 0 and len(out.strip().splitlines()) == 1
        assert json.loads(out)["shots"] == 2
    code, out, _ = run([*base, "fit", "--probs", str(tmp_path / "validation.json"), "--method",
                        "linc", "--size", "10", "--lr", "0.2", "--epochs", "20", "--out",
                        str(tmp_path / "linc.json"), "--json"], capsys)
    fitted = json.loads(out)
    assert code == 0 and fitted["examples"] == 10 and len(fitted["state"]["W"]) == 2
    code, out, _ = run([*base, "evaluate", "--probs", str(tmp_path / "test.json"),
                        "--calibrator", str(tmp_path / "linc.json"), "--figures",
                        str(tmp_path / "fig"), "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["method"] == "linc"
    assert set(result["metrics"]) == {"accuracy", "macro_f1", "ece", "mean_entropy_bits"}
    assert len(result["reliability"]) == 10 and sum(result["entropy_histogram"]["counts"]) == 40
    assert (tmp_path / "fig" / "reliability.png").stat().st_size > 0
    code, out, _ = run([*base, "evaluate", "--probs", str(tmp_path / "test.json")], capsys)
    assert code == 0 and out.startswith("accuracy")


def test_benchmark_on_user_files_is_one_json_object(files, capsys, tmp_path):
    code, out, err = run([
        "llm", "calibrate", "bench", "--quick", "--seeds", "1", "--no-federated",
        "--model", str(files / "model"), "--prompt", str(files / "review.json"),
        "--prompt", str(files / "arrow.json"), "--pool", str(files / "pool.jsonl"),
        "--validation", str(files / "validation.jsonl"), "--test", str(files / "test.jsonl"),
        "--lr", "0.1", "--epochs", "5", "--out", str(tmp_path / "bench.json"),
        "--markdown", str(tmp_path / "bench.md"), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result["summary"]) == {"0", "4"}
    assert set(result["summary"]["4"]) >= {"none", "contextual", "linc@5", "linc@10",
                                           "temperature@5", "platt@10"}
    assert set(result["rows"]["0"]) == {"review", "arrow"}
    assert set(result["sensitivity"]) == {"permutations", "proportions"}
    assert json.loads((tmp_path / "bench.json").read_text())["summary"] == result["summary"]
    assert "### Targets" in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["probs", "--model", "{root}/nowhere", "--prompt", "{root}/review.json", "--data",
      "{root}/test.jsonl", "--out", "{tmp}/p.json"], "model path"),
    (["probs", "--model", "{root}/model", "--prompt", "{root}/missing.json", "--data",
      "{root}/test.jsonl", "--out", "{tmp}/p.json"], "prompt file"),
    (["probs", "--model", "{root}/model", "--prompt", "{root}/review.json", "--data",
      "{root}/bad.jsonl", "--out", "{tmp}/p.json"], "bad.jsonl:1: label 'meh'"),
    (["probs", "--model", "{root}/model", "--prompt", "{root}/review.json", "--data",
      "{root}/test.jsonl", "--shots", "2", "--out", "{tmp}/p.json"], "--shots needs --pool"),
    (["fit", "--probs", "{root}/missing.json", "--method", "linc", "--out", "{tmp}/c.json"],
     "probability file"),
    (["fit", "--probs", "{root}/review.json", "--method", "linc", "--out", "{tmp}/c.json"],
     "not a probability file"),
    (["bench", "--model", "{root}/model", "--prompt", "{root}/review.json"],
     "--model needs --pool, --validation, --test"),
    (["bench", "--seeds", "0"], "--seeds must be at least 1"),
    (["bench", "--lr", "0"], "--lr must be > 0"),
    (["bench", "--model", "{root}/model", "--prompt", "{root}/review.json", "--pool",
      "{root}/pool.jsonl", "--validation", "{root}/validation.jsonl", "--test",
      "{root}/test.jsonl"], "needs LinC's learning rate (--lr)"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, tmp_path, argv, message):
    (files / "bad.jsonl").write_text('{"text": "film", "label": "meh"}\n')
    argv = [a.format(root=files, tmp=tmp_path) for a in argv]
    code, out, err = run(["llm", "calibrate", *argv], capsys)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("pv4fad: error:")]
    assert len(lines) == 1 and message in lines[0]
