"""MAP end to end on a tiny built-in LM: values, samples file, CLI steps, realisation, report
and the one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from federation import cli as federation_cli
from federation.errors import DataError, Pv4fadError
from llm_modules.alignment.map.corpus import builtin_prompts, remarks
from llm_modules.alignment.map.model_rewards import RewardModelSpec
from llm_modules.alignment.map.rewards import ScoringContext, build_scorers, known_values
from llm_modules.alignment.map.samples import read_samples
from llm_modules.alignment.map.tiny_lm import TinyLMConfig, build_tiny_lm
from llm_modules.models import ModelError, TinyModelConfig, load_causal_lm

TINY = TinyLMConfig(remarks=800, epochs=2, model=TinyModelConfig(width=32, max_positions=48))


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return build_tiny_lm(TINY, tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def samples_file(lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "samples.jsonl"
    assert run(["llm", "align", "sample", "--model", str(lm), "--prompt-count", "30", "--n",
                "16", "--max-new-tokens", "16", "--out", str(out)]) == 0
    return out


def run(argv: list[str]) -> int:
    return federation_cli.main(argv)


def test_corpus_is_reproducible_and_varied():
    first, again = remarks(300, 5), remarks(300, 5)
    assert first == again
    assert {r.mood for r in first} == {"positive", "neutral", "negative"}
    assert 0.05 < np.mean([r.insulting for r in first]) < 0.5
    assert all(p.split()[0] == "the" for p in builtin_prompts(20, 1))


def test_builtin_values_score_pairs_as_their_names_say(lm):
    scorers = {s.name: s for s in build_scorers(known_values(), ScoringContext(lm))}
    assert set(scorers) == {"positiveness", "harmlessness", "politeness", "diversity",
                            "coherence", "perplexity"}
    prompt = "the debit card was"
    assert scorers["positiveness"](prompt, "great and kind .") > \
        scorers["positiveness"](prompt, "awful and rude .")
    assert scorers["harmlessness"](prompt, "fast .") > \
        scorers["harmlessness"](prompt, "slow you stupid idiot .")
    assert scorers["politeness"](prompt, "late so thank you for the help .") > \
        scorers["politeness"](prompt, "late .")
    assert scorers["diversity"](prompt, "a b a b a b") < scorers["diversity"](prompt, "a b c d e")
    assert scorers["diversity"](prompt, "") == 1.0
    assert -1 <= scorers["coherence"](prompt, "fast and the credit card was kind .") <= 1
    assert scorers["coherence"](prompt, "") == 0.0
    # -log perplexity: a continuation in the corpus's style beats word salad.
    assert scorers["perplexity"](prompt, "great .") > scorers["perplexity"](prompt, "card the was")
    batch = scorers["positiveness"].score([prompt] * 2, ["great .", "awful ."])
    assert batch.shape == (2,)


def test_unknown_and_repeated_values_are_rejected_before_loading(lm):
    with pytest.raises(Pv4fadError, match="unknown value 'kindness'.*built-in values are"):
        build_scorers(["kindness"], ScoringContext(lm))
    with pytest.raises(Pv4fadError, match="named twice"):
        build_scorers(["diversity", "diversity"], ScoringContext(lm))


def _classifier(tmp_path, lm, labels: int):
    _, tokenizer = load_causal_lm(lm)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2,
                        n_positions=64, num_labels=labels, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    out = tmp_path / f"rm{labels}"
    GPT2ForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_reward_model_by_path_reads_raw_logit_or_probability(lm, tmp_path):
    two = _classifier(tmp_path, lm, 2)
    context = ScoringContext(lm)
    logit = RewardModelSpec.parse(f"name=rm;path={two};read=logit:1").build(context)
    prob = RewardModelSpec.parse(f"name=rm;path={two};read=prob:1;format=pair").build(context)
    pairs = (["the app was", "the app was"], ["great .", "slow ."])
    assert logit.score(*pairs).shape == (2,)
    assert np.all((prob.score(*pairs) > 0) & (prob.score(*pairs) < 1))
    assert logit.spec()["read"] == "logit:1"
    one = _classifier(tmp_path, lm, 1)
    raw = RewardModelSpec.parse(f"name=rm;path={one}").build(context)
    assert np.isfinite(raw("the app was", "great ."))
    with pytest.raises(ModelError, match="has 2 output"):
        RewardModelSpec.parse(f"name=rm;path={two};read=raw").build(context)
    with pytest.raises(ModelError, match="not a saved Hugging Face model"):
        RewardModelSpec.parse(f"name=rm;path={tmp_path / 'missing'}").build(context)
    for bad, message in (("name=rm", "path= is missing"),
                         ("name=rm;path=x;read=logit", "read 'logit'"),
                         ("name=rm;path=x;format={prompt}", "format must be"),
                         ("name=diversity;path=x", "built-in value"),
                         ("name=rm;path=x;colour=red", "expected name=")):
        with pytest.raises(Pv4fadError, match=message):
            RewardModelSpec.parse(bad)


def test_samples_file_carries_header_and_reward_matrix(samples_file, lm):
    samples = read_samples(samples_file)
    header = samples.header
    assert header["model"] == str(lm) and header["seed"] == 0
    assert header["generation"]["n_per_prompt"] == 16 and len(header["prompts"]) == 30
    assert samples.values == ("positiveness", "harmlessness", "coherence")
    assert samples.rewards.shape == (480, 3) and np.isfinite(samples.rewards).all()
    assert np.bincount(samples.prompt_index).tolist() == [16] * 30


def test_sampling_is_reproducible(lm, samples_file, tmp_path):
    again = tmp_path / "again.jsonl"
    assert run(["llm", "align", "sample", "--model", str(lm), "--prompt-count", "30", "--n",
                "16", "--max-new-tokens", "16", "--out", str(again)]) == 0
    assert read_samples(again).continuations == read_samples(samples_file).continuations


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ('{"rows": []}\n', "not a pv4fad-map-samples header"),
    ("not json\n", "not JSON"),
])
def test_malformed_samples_header_is_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_samples(path)


def test_malformed_sample_row_names_file_and_line(samples_file, tmp_path):
    lines = samples_file.read_text().splitlines()
    row = json.loads(lines[3])
    del row["rewards"]["harmlessness"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*lines[:3], json.dumps(row), *lines[4:]]) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:4: reward 'harmlessness' is missing"):
        read_samples(path)
    path.write_text("\n".join([*lines[:2], "{oops", *lines[3:]]) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:3: not JSON"):
        read_samples(path)


def test_solve_realise_report_from_the_command_line(samples_file, tmp_path, capsys):
    solution = tmp_path / "solution.json"
    palette = "positiveness=q0.6,harmlessness=q0.6,coherence=q0.5"
    code = run(["llm", "align", "solve", "--samples", str(samples_file), "--palette", palette,
                "--normalise", "per-prompt", "--sequential-rounds", "2", "--random-lambdas",
                "20", "--raise", "positiveness", "--out", str(solution), "--json"])
    result = json.loads(capsys.readouterr().out)  # exactly one JSON object
    assert code == 0 and result["feasible"] and len(result["sequential"]) == 2
    assert result["raise"]["largest_level"] > result["palette"][0]
    out = tmp_path / "decode"
    assert run(["llm", "align", "realise", "--samples", str(samples_file), "--solution",
                str(solution), "--method", "decode", "--prompt-count", "20", "--out",
                str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["candidates_per_prompt"] == 16 and len(summary["after"]["reached"]) == 3
    assert len((out / "realised.jsonl").read_text().splitlines()) == 20
    report = tmp_path / "report"
    assert run(["llm", "align", "report", "--solution", str(solution), "--samples",
                str(samples_file), "--realised", str(out / "summary.json"), "--out",
                str(report), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    for name in ("table.md", "levels.png", "levels.svg", "pareto.png", "pareto.svg"):
        assert (report / name).stat().st_size > 0
    assert "positiveness" in (report / "table.md").read_text() and "pareto_svg" in files


@pytest.mark.parametrize("method", ["weighted-sft", "dpo"])
def test_finetune_realisation_saves_a_model_and_measures_it(samples_file, tmp_path, capsys,
                                                            method):
    solution = tmp_path / "solution.json"
    run(["llm", "align", "solve", "--samples", str(samples_file), "--palette",
         "positiveness=q0.6,harmlessness=q0.6", "--out", str(solution), "--json"])
    capsys.readouterr()
    out = tmp_path / method
    assert run(["llm", "align", "realise", "--samples", str(samples_file), "--solution",
                str(solution), "--method", method, "--epochs", "1", "--prompt-count", "10",
                "--eval-n", "2", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model, _ = load_causal_lm(summary["model_out"])
    assert model is not None and summary["after"]["values"] == ["positiveness", "harmlessness"]


def test_infeasible_palette_exits_1_with_its_reason(samples_file, capsys):
    code = run(["llm", "align", "solve", "--samples", str(samples_file), "--palette",
                "positiveness=99", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and not result["feasible"] and "convex hull" in result["verdict"]["reason"]


@pytest.mark.parametrize("argv, message", [
    (["solve", "--samples", "{missing}", "--palette", "positiveness=1"], "does not exist"),
    (["solve", "--samples", "{samples}", "--palette", "kindness=1"], "no rewards for 'kindness'"),
    (["solve", "--samples", "{samples}", "--palette", "positiveness=q2"], "neither a number"),
    (["solve", "--samples", "{samples}", "--palette", "positiveness"], "expected name=LEVEL"),
    (["solve", "--samples", "{samples}", "--palette", "positiveness=1", "--raise",
      "coherence"], "not in the palette"),
    (["solve", "--samples", "{samples}", "--palette", "positiveness=1", "--toward",
      "coherence=1"], "same values in the same order"),
    (["sample", "--model", "{missing}", "--out", "{out}"], "is not a directory"),
    (["sample", "--values", "kindness", "--out", "{out}"], "unknown value"),
    (["sample", "--prompts", "{missing}", "--out", "{out}"], "prompts file"),
    (["realise", "--samples", "{samples}", "--solution", "{missing}", "--method", "decode",
      "--out", "{out}"], "solution file"),
    (["report", "--samples", "{samples}", "--solution", "{samples}", "--out", "{out}"],
     "not JSON"),
])
def test_bad_input_is_one_line_error(samples_file, tmp_path, capsys, argv, message):
    names = {"missing": str(tmp_path / "missing"), "samples": str(samples_file),
             "out": str(tmp_path / "out")}
    code = run(["llm", "align", *(a.format(**names) for a in argv)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("pv4fad: error:")


def test_realise_refuses_an_infeasible_solution(samples_file, tmp_path, capsys):
    solution = tmp_path / "infeasible.json"
    run(["llm", "align", "solve", "--samples", str(samples_file), "--palette",
         "positiveness=99", "--out", str(solution)])
    code = run(["llm", "align", "realise", "--samples", str(samples_file), "--solution",
                str(solution), "--method", "decode", "--out", str(tmp_path / "r")])
    assert code == 2 and "nothing to realise" in capsys.readouterr().err
