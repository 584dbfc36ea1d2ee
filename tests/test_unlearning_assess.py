"""`pv4fad llm assess` on a tiny built-in task: the report's sections and fields, the
robustness probes (relearning must bring the forget set back), and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from federation import cli as federation_cli
from federation.errors import Pv4fadError
from llm_modules.models import TinyModelConfig, load_causal_lm
from llm_modules.unlearning.assess import (
    ATTACKS,
    AssessConfig,
    assess,
    efficiency,
    in_context_questions,
    measure,
    split_forget,
    write_report,
)
from llm_modules.unlearning.benchmark import BenchmarkConfig, build_benchmark
from llm_modules.unlearning.data import encode_pairs
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn

TINY = BenchmarkConfig(
    n_entities=12, n_forget=3, n_holdout=3, model=TinyModelConfig(width=64), train_epochs=150,
    seed=1,
)
SPLITS = ("forget", "retain", "holdout", "world")


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    paths = build_benchmark(TINY, tmp_path_factory.mktemp("assess"))
    return paths, paths.load_splits(extra=True)


@pytest.fixture(scope="module")
def assessed(bench, tmp_path_factory):
    paths, every = bench
    target = load_causal_lm(paths.target)
    retain_model = load_causal_lm(paths.retain_model)
    splits = {name: every[name] for name in SPLITS}
    worker = copy.deepcopy(target[0])
    config = UnlearnConfig(method="gradascent", lr=1e-3, epochs=5, seed=1)
    _, spent = measure(lambda: unlearn(worker, target[1], splits["forget"], splits["retain"],
                                       config), torch.device("cpu"))
    cost = efficiency(spent, {**paths.training()["retain_model"], "kind": "measured"})
    result = assess(
        {"unlearned": (worker, target[1]), "target": target, "retain_model": retain_model},
        splits, AssessConfig(relearn_steps=4, relearn_lr=1e-3, seed=1),
        generalisation={"paraphrased": every["forget_paraphrased"],
                        "related": every["forget_related"]},
        cost=cost,
    )
    out = tmp_path_factory.mktemp("report")
    return result, write_report(result, out), out


def test_builtin_task_writes_paraphrased_and_related_probes(bench):
    _, every = bench
    forget_questions = {f.question for f in every["forget"]}
    paraphrased, related = every["forget_paraphrased"], every["forget_related"]
    assert len(paraphrased) == len(every["forget"])
    # reworded questions, same answers, never in the forget set
    assert not forget_questions & {f.question for f in paraphrased}
    assert [f.answer for f in paraphrased] == [f.answer for f in every["forget"]]
    # a related answer's value appears in its forget fact's answer (it is implied by it)
    by_entity = {}
    for fact in every["forget"]:
        by_entity.setdefault(fact.attributes["entity"], []).append(fact.answer)
    for fact in related:
        city_or_award = fact.answer.split()[-2]
        assert any(city_or_award in answer for answer in by_entity[fact.attributes["entity"]])


def test_report_has_every_section_and_field(assessed):
    result, written, out = assessed
    assert result["models"] == ["target", "unlearned", "retain_model"]
    unlearned = result["efficacy"]["unlearned"]
    for key in ("forget_quality", "forget_probability", "forget_rouge",
                "forget_extraction_strength", "forget_truth_ratio"):
        assert 0.0 <= unlearned[key] <= 1.0, key
    assert set(unlearned["mia"]) == set(ATTACKS)
    for attack in ATTACKS.values():
        assert attack in result["metrics"]["unlearned"]
    for row in unlearned["mia"].values():
        assert 0.0 <= row["auc"] <= 1.0 and "privleak" in row
    # the retain-only model is its own reference: privleak 0 under every attack
    for row in result["efficacy"]["retain_model"]["mia"].values():
        assert row["privleak"] == pytest.approx(0.0, abs=1e-9)
    assert set(result["generalisation"]) == {"paraphrased", "related"}
    for probe in result["generalisation"].values():
        assert set(probe) == {"target", "unlearned", "retain_model"}
        assert set(probe["unlearned"]) == {"probability", "rouge", "extraction_strength"}
    assert "model_utility" in result["utility"]["unlearned"]
    rob = result["robustness"]
    assert rob["exposed"] + rob["measured"] == result["sizes"]["forget"]
    assert set(rob["in_context"]) == {"target", "unlearned", "retain_model"}
    assert set(rob["relearning"]) == {"unlearned", "retain_model"}  # not the target
    assert len(rob["relearning"]["unlearned"]["curve"]) == 4 + 1
    eff = result["efficiency"]
    assert eff["unlearning"]["seconds"] > 0 and eff["retraining"]["seconds"] > 0
    assert eff["time_ratio"] == pytest.approx(
        eff["unlearning"]["seconds"] / eff["retraining"]["seconds"])
    assert eff["cpu_time_ratio"] == pytest.approx(
        eff["unlearning"]["cpu_seconds"] / eff["retraining"]["cpu_seconds"])
    assert "memory_ratio" not in eff  # CPU RSS deltas do not compare across runs
    # written: JSON equal to the result, Markdown with its sections, real PNG figures
    assert json.loads((out / "assessment.json").read_text()) == json.loads(
        json.dumps(result, default=str))
    page = (out / "assessment.md").read_text()
    for heading in ("## Efficacy", "## Generalisation", "## Utility", "## Robustness",
                    "## Efficiency", "privleak (zlib)", "MIA min_k_plus_plus AUC"):
        assert heading in page
    for name in ("efficacy.png", "mia.png", "robustness.png"):
        assert f"]({name})" in page
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlearning_lowered_and_relearning_raised_the_forget_likelihood(assessed):
    result, _, _ = assessed
    forget_p = {n: result["efficacy"][n]["forget_probability"] for n in result["models"]}
    assert forget_p["unlearned"] < forget_p["target"] - 0.3
    relearned = result["robustness"]["relearning"]["unlearned"]
    # a few steps on the exposed half bring the *measured* half back
    assert relearned["nll_after"] < relearned["nll_before"] - 1.0
    assert relearned["probability_after"] > relearned["probability_before"]
    assert relearned["nll_curve"][0] == relearned["nll_before"]
    assert relearned["recovered_fraction"] > 0.0


def test_in_context_prompts_fit_the_model_and_shots_come_from_the_exposed_part(bench):
    paths, every = bench
    model, tokenizer = load_causal_lm(paths.target)
    exposed, measured = split_forget(every["forget"], 0.5, seed=3)
    assert len(exposed) + len(measured) == len(every["forget"])
    assert not {f.question for f in exposed} & {f.question for f in measured}
    questions, used = in_context_questions(model, tokenizer, exposed, measured, 10, None)
    assert 0 < used < 10  # 64 positions cannot hold 10 shots: fewer were used
    for question, fact in zip(questions, measured, strict=True):
        assert question.endswith(fact.question) and len(question) > len(fact.question)
        width = encode_pairs(tokenizer, [question], [fact.answer]).input_ids.shape[1]
        assert width <= model.config.n_positions


def test_assess_config_and_split_errors():
    with pytest.raises(Pv4fadError, match="exposed-fraction"):
        AssessConfig(exposed_fraction=1.0).check()
    with pytest.raises(Pv4fadError, match="at least 2 facts"):
        split_forget(["one"], 0.5, 0)


def test_cli_assess_on_files_unlearns_times_and_writes_the_report(bench, tmp_path, capsys):
    paths, _ = bench
    out = tmp_path / "report"
    code = federation_cli.main([
        "llm", "assess", "--target", str(paths.target), "--method", "npo", "--lr", "1e-3",
        "--epochs", "2", "--retain-model", str(paths.retain_model),
        *[arg for name in SPLITS for arg in (f"--{name}", str(paths.split(name)))],
        "--paraphrased", str(paths.split("forget_paraphrased")),
        "--related", str(paths.split("forget_related")),
        "--relearn-steps", "2", "--out", str(out), "--json",
    ])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    eff = shown["assessment"]["efficiency"]
    assert eff["unlearning"]["method"] == "npo" and eff["unlearning"]["steps"] == 2 * 2
    assert eff["retraining"]["kind"].startswith("estimated")
    assert eff["retraining"]["seconds"] > 0 and eff["retraining"]["cpu_seconds"] > 0
    assert (out / "assessment.md").is_file() and (out / "robustness.png").is_file()


def test_cli_assess_rejects_incomplete_requests(bench, tmp_path, capsys):
    paths, _ = bench
    assert federation_cli.main(["llm", "assess", "--out", str(tmp_path)]) != 0
    assert "give --model" in capsys.readouterr().err
    assert federation_cli.main(["llm", "assess", "--builtin", "--method", "npo", "--target",
                                str(paths.target), "--out", str(tmp_path)]) != 0
    assert "drop --target" in capsys.readouterr().err
    code = federation_cli.main(["llm", "assess", "--model", str(paths.target), "--forget",
                                str(paths.split("forget")), "--retain",
                                str(paths.split("retain")), "--out", str(tmp_path)])
    assert code != 0 and "no holdout split" in capsys.readouterr().err
