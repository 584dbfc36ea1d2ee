"""Post-training: the losses against a direct computation, the methods' schedules, the
trainer, the data checks and the command line."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from federation.cli import main
from federation.errors import DataError, Pv4fadError
from llm_modules.alignment.post_training import (
    METHODS,
    PostTrainConfig,
    model_digest,
    post_train,
)
from llm_modules.alignment.post_training_data import (
    PreferencePair,
    SFTExample,
    load_preferences,
    load_sft,
    save_jsonl,
)
from llm_modules.alignment.post_training_losses import (
    completion_logps,
    dpo_loss,
    objective_data,
    preference_loss,
    sft_loss,
)
from llm_modules.alignment.post_training_run import PostTrainingData
from llm_modules.alignment.post_training_tasks import TaskConfig, generate_task
from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer

TASK = generate_task(TaskConfig(n_objects=12, seed=5))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine two threads
    spinning at each op's barrier make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = word_level_tokenizer(TASK.texts())
    model = tiny_causal_lm(TinyModelConfig(width=32, max_positions=48), tokenizer, seed=1)
    return model.eval(), tokenizer


def _sequence_logp(model, tokenizer, prompt: str, completion: str) -> tuple[float, int]:
    """log p(completion <eos> | prompt) of one unpadded sequence, token by token."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + completion_ids + [tokenizer.eos_token_id]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    total = sum(float(logprobs[t - 1, ids[t]]) for t in range(len(prompt_ids), len(ids)))
    return total, len(ids) - len(prompt_ids)


def test_losses_equal_a_direct_computation_from_log_probabilities(tiny):
    model, tokenizer = tiny
    reference = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs from the policy
        for param in reference.parameters():
            param.add_(0.05 * torch.randn_like(param))
    sft, pairs = TASK.sft_train[:6], TASK.preference_train[:6]
    data = objective_data(tokenizer, reference, sft, pairs)
    beta = 0.1
    with torch.no_grad():
        got_sft = float(sft_loss(model, data.sft_batch(range(6), torch.device("cpu"))))
        batch, ref = data.pair_batch(range(6), torch.device("cpu"))
        got_dpo = float(preference_loss(model, batch, ref, beta))

    scored = [_sequence_logp(model, tokenizer, ex.prompt, ex.response) for ex in sft]
    want_sft = -sum(lp for lp, _ in scored) / sum(n for _, n in scored)
    losses = []
    for pair in pairs:
        chosen = _sequence_logp(model, tokenizer, pair.prompt, pair.chosen)[0]
        rejected = _sequence_logp(model, tokenizer, pair.prompt, pair.rejected)[0]
        ref_chosen = _sequence_logp(reference, tokenizer, pair.prompt, pair.chosen)[0]
        ref_rejected = _sequence_logp(reference, tokenizer, pair.prompt, pair.rejected)[0]
        margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
        losses.append(math.log1p(math.exp(-margin)))  # -log sigmoid(margin)
    want_dpo = sum(losses) / len(losses)
    assert abs(got_sft - want_sft) < 1e-6
    assert abs(got_dpo - want_dpo) < 1e-6
    assert got_dpo != pytest.approx(math.log(2), abs=1e-3)  # the reference really differs


def test_dpo_loss_formula_and_gradient_sign():
    policy = torch.tensor([-3.0, -5.0, -4.0, -2.0], requires_grad=True)  # [chosen, rejected]
    reference = torch.tensor([-3.5, -4.0, -3.0, -3.0])
    loss = dpo_loss(policy, reference, beta=0.5)
    margins = 0.5 * torch.tensor([(-3.0 + 3.5) - (-4.0 + 3.0), (-5.0 + 4.0) - (-2.0 + 3.0)])
    assert float(loss) == pytest.approx(float(-F.logsigmoid(margins).mean()), abs=1e-7)
    loss.backward()
    assert (policy.grad[:2] < 0).all() and (policy.grad[2:] > 0).all()  # raise chosen


def test_completion_scores_only_response_tokens(tiny):
    model, tokenizer = tiny
    data = objective_data(tokenizer, model, TASK.sft_train[:2], TASK.preference_train[:2])
    batch = data.sft_batch([0, 1], torch.device("cpu"))
    _, counts = completion_logps(model, batch)
    responses = [len(ex.response.split()) + 1 for ex in TASK.sft_train[:2]]  # + <eos>
    assert counts.tolist() == responses


class _FakeObjectives:
    """Records which objective each step used; losses are fixed per objective."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        self.values, self.calls, self.peeks = values, [], []
        self.position = {"sft": 0, "dpo": 0}

    def _next(self, name: str) -> float:
        return self.values[name][self.position[name] % len(self.values[name])]

    def loss(self, name: str) -> torch.Tensor:
        self.calls.append(name)
        value = self._next(name)
        self.position[name] += 1
        return torch.tensor(value, requires_grad=True)

    def peek_loss(self, name: str) -> float:
        self.peeks.append(name)
        return self._next(name)


def _schedule(method: str, steps: int, values=None, **config) -> _FakeObjectives:
    fake = _FakeObjectives(values or {"sft": [1.0], "dpo": [1.0]})
    runner = METHODS[method](PostTrainConfig(method=method, steps=steps, **config))
    for step in range(steps):
        runner.loss(step, fake)
    return fake


def test_sequential_orders_split_the_steps_by_lambda():
    assert _schedule("sft-then-dpo", 20, lam=0.25).calls == ["sft"] * 15 + ["dpo"] * 5
    assert _schedule("dpo-then-sft", 20, lam=0.25).calls == ["dpo"] * 5 + ["sft"] * 15
    assert _schedule("mix", 3, lam=0.5).calls == ["sft", "dpo"] * 3


def test_alright_draws_dpo_with_probability_lambda_reproducibly():
    calls = _schedule("alright", 2000, lam=0.25, seed=4).calls
    assert calls.count("dpo") / 2000 == pytest.approx(0.25, abs=0.03)
    assert calls == _schedule("alright", 2000, lam=0.25, seed=4).calls
    assert calls != _schedule("alright", 2000, lam=0.25, seed=5).calls


def test_maxright_picks_the_larger_weighted_gap_and_refreshes_as_specified():
    # sft losses fall 3.0, 2.0, 1.0, ...; dpo stays 1.5; lambda 0.5, f_SFT* 0.5, f_DPO* 0.
    values = {"sft": [3.0, 2.0, 1.0, 0.9, 0.8, 0.7], "dpo": [1.5]}
    fake = _schedule("maxright", 6, values, lam=0.5, sft_opt=0.5, refresh_every=4)
    # step 0: both peeked (gaps 1.25 vs 0.75) -> sft (3.0 -> gap 1.25);
    # step 1: sft gap still 1.25 (refreshed from the loss just computed) -> sft (2.0 -> 0.75);
    # step 2: tie 0.75 vs 0.75 -> sft (1.0 -> 0.25); step 3: dpo (gap 0.75, 1.5 -> 0.75);
    # step 4: refresh: sft peek 0.9 -> 0.2, dpo 0.75 -> dpo; step 5: dpo again.
    assert fake.calls == ["sft", "sft", "sft", "dpo", "dpo", "dpo"]
    assert fake.peeks == ["sft", "dpo", "sft", "dpo"]


@pytest.mark.parametrize("bad, message", [
    ({"method": "nope"}, "unknown post-training method"),
    ({"lam": 1.5}, "lambda must be in"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"schedule": "step"}, "unknown schedule"),
])
def test_config_errors_name_the_option(bad, message):
    with pytest.raises(Pv4fadError, match=message):
        PostTrainConfig(**bad).check()


def test_trainer_is_deterministic_and_moves_the_objectives(tiny):
    model, tokenizer = tiny
    train = objective_data(tokenizer, model, TASK.sft_train, TASK.preference_train)
    held = objective_data(tokenizer, model, TASK.sft_eval, TASK.preference_eval)
    digests = []
    for method, steps in (("alright", 12), ("alright", 12), ("maxright", 12), ("mix", 6)):
        copy_ = copy.deepcopy(model)
        result = post_train(copy_, train, PostTrainConfig(method=method, steps=steps, lr=3e-3,
                                                          eval_every=6), held)
        digests.append(model_digest(copy_))
        assert [p[0] for p in result.trajectory] == list(range(0, steps + 1, 6))
        per_step = 2 if method == "mix" else 1
        assert sum(result.updates.values()) == per_step * steps
    assert digests[0] == digests[1] != digests[2]
    assert digests[0] != model_digest(model)
    sft_only = copy.deepcopy(model)
    result = post_train(sft_only, train, PostTrainConfig(method="sft", steps=25, lr=3e-3), held)
    assert result.trajectory[-1][1] < result.trajectory[0][1] - 0.5  # held-out f_SFT falls


def test_data_files_are_checked_line_by_line(tmp_path):
    good = save_jsonl([SFTExample("p", "r")], tmp_path / "sft.jsonl")
    assert load_sft(good) == [SFTExample("p", "r")]
    with pytest.raises(DataError, match="does not exist"):
        load_sft(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_sft(bad)
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing or empty field\(s\) rejected"):
        load_preferences(bad)
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "a"}\n')
    with pytest.raises(DataError, match="same response"):
        load_preferences(bad)
    bad.write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_preferences(bad)
    pairs = save_jsonl([PreferencePair("p", "a", "b")], tmp_path / "pref.jsonl")
    with pytest.raises(DataError, match="needs both"):
        PostTrainingData.from_files(str(good), str(pairs), sft_eval=str(good))


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, tiny):
    """The small task's files and an untrained tiny model, laid out as `post-training-task`
    writes them (that command, which also trains the base, runs in the slow test)."""
    from llm_modules.models import save_causal_lm

    out = tmp_path_factory.mktemp("task")
    save_jsonl(TASK.sft_train, out / "sft.jsonl")
    save_jsonl(TASK.preference_train, out / "preference.jsonl")
    save_jsonl(TASK.sft_eval, out / "sft_eval.jsonl")
    save_jsonl(TASK.preference_eval, out / "preference_eval.jsonl")
    save_causal_lm(*tiny, out / "base")
    return out


def test_cli_post_train_writes_a_model_whose_digest_it_reports(task_dir, tmp_path, capsys):
    from llm_modules.models import load_causal_lm

    capsys.readouterr()
    code, out, err = _run_cli(
        capsys, "llm", "post-train", "--model", str(task_dir / "base"),
        "--sft", str(task_dir / "sft.jsonl"), "--preference", str(task_dir / "preference.jsonl"),
        "--sft-eval", str(task_dir / "sft_eval.jsonl"),
        "--preference-eval", str(task_dir / "preference_eval.jsonl"),
        "--method", "maxright", "--steps", "20", "--eval-every", "10",
        "--out", str(tmp_path / "model"), "--json",
    )
    assert code == 0, err
    result = json.loads(out)  # exactly one JSON object on stdout
    assert result["updates"]["sft"] + result["updates"]["dpo"] == 20
    assert set(result["held_out"]) == {"f_sft", "f_dpo"}
    assert "step 10/20" in err
    model, _ = load_causal_lm(tmp_path / "model")
    assert model_digest(model) == result["digest"]


@pytest.mark.parametrize("change, message", [
    (["--model", "/nonexistent"], "model path '/nonexistent' is not a directory"),
    (["--sft", "/nonexistent.jsonl"], "SFT file '/nonexistent.jsonl' does not exist"),
    (["--lambda", "2"], "lambda must be in [0, 1], got 2.0"),
    (["--lora-rank", "-1"], "LoRA rank must be >= 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(task_dir, capsys, change, message):
    args = {"--model": str(task_dir / "base"), "--sft": str(task_dir / "sft.jsonl"),
            "--preference": str(task_dir / "preference.jsonl")}
    extra = []
    for key, value in zip(change[::2], change[1::2], strict=True):
        if key in args:
            args[key] = value
        else:
            extra += [key, value]
    argv = ["llm", "post-train", *[x for kv in args.items() for x in kv], *extra, "--steps", "2"]
    code, out, err = _run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"pv4fad: error: {err.strip().split('error: ')[1]}"]
    assert message in err


def test_lora_trains_adapters_and_saves_a_merged_model(task_dir, tmp_path):
    from llm_modules.alignment.post_training_run import LoraSettings, run_post_training
    from llm_modules.models import load_causal_lm

    data = PostTrainingData.from_files(str(task_dir / "sft.jsonl"),
                                       str(task_dir / "preference.jsonl"))
    config = PostTrainConfig(method="alright", steps=10, lr=5e-3)
    result = run_post_training(task_dir / "base", data, config, lora=LoraSettings(rank=4),
                               out_dir=tmp_path / "lora")
    base, _ = load_causal_lm(task_dir / "base")
    merged, _ = load_causal_lm(tmp_path / "lora")
    assert result["lora_rank"] == 4
    assert set(dict(merged.named_parameters())) == set(dict(base.named_parameters()))
    assert model_digest(merged) == result["digest"] != model_digest(base)
    # Embeddings are not adapted: only the linear layers' merged updates moved.
    assert torch.equal(merged.transformer.wte.weight, base.transformer.wte.weight)


def test_reference_model_option(task_dir, tmp_path):
    from llm_modules.alignment.post_training_run import run_post_training
    from llm_modules.models import ModelError, save_causal_lm

    data = PostTrainingData.from_files(str(task_dir / "sft.jsonl"),
                                       str(task_dir / "preference.jsonl"))
    config = PostTrainConfig(method="dpo", lam=1.0, steps=3)
    default = run_post_training(task_dir / "base", data, config)
    explicit = run_post_training(task_dir / "base", data, config, reference_path=task_dir / "base")
    assert explicit["digest"] == default["digest"]  # the starting model is the default pi_ref
    other = word_level_tokenizer(["some other words"])
    save_causal_lm(tiny_causal_lm(TinyModelConfig(width=32), other, 0), other, tmp_path / "other")
    with pytest.raises(ModelError, match="different tokenizer"):
        run_post_training(task_dir / "base", data, config, reference_path=tmp_path / "other")


def _fake_seed(seed: int, distances: dict[str, float], seconds: dict[str, float]) -> dict:
    """A seed's scored runs at lambda 0.5 with given distances (f_DPO at its optimum)."""
    from llm_modules.alignment.post_training_bench import score

    optimum = {"sft_held_out": 1.0, "dpo_held_out": 0.5, "sft_train": 0.0, "dpo_train": 0.0}
    runs = {}
    for method, distance in distances.items():
        run = {"method": method, "lam": 0.5, "final_sft": 1.0 + distance, "final_dpo": 0.5,
               "seconds": seconds[method], "cpu_seconds": seconds[method], "peak_mib": 1.0,
               "updates": {"sft": 5, "dpo": 5}, "trajectory": []}
        runs[f"{method}@0.5"] = score(run, optimum)
    return {"seed": seed, "optimum": optimum, "runs": runs}


def test_benchmark_scores_and_verdicts():
    from llm_modules.alignment.post_training_bench import summarise
    from llm_modules.alignment.post_training_report import pareto_front

    distances = {"sft-then-dpo": 3.0, "dpo-then-sft": 1.0, "mix": 0.2, "alright": 0.5,
                 "maxright": 1.5}
    seconds = {"sft-then-dpo": 10.0, "dpo-then-sft": 10.0, "mix": 20.0, "alright": 10.5,
               "maxright": 12.0}
    per_seed = [_fake_seed(s, distances, seconds) for s in range(3)]
    run = per_seed[0]["runs"]["alright@0.5"]
    assert run["distance"] == pytest.approx(0.5)
    assert run["weighted_gap"] == pytest.approx(0.25)  # (1 - 0.5) * 0.5 + 0.5 * 0
    summary = summarise(per_seed, (0.5,))
    assert summary["table"]["mix@0.5"]["seconds_ratio"]["median"] == pytest.approx(2.0)
    assert summary["verdict"]["alright@0.5"] == {
        "closer_than_both_sequential": True, "time_within_limit": True,
        "cpu_time_within_limit": True}
    assert summary["verdict"]["maxright@0.5"] == {  # farther than DPO->SFT, 1.2x the time
        "closer_than_both_sequential": False, "time_within_limit": False,
        "cpu_time_within_limit": False}
    assert pareto_front([(1, 3), (2, 2), (3, 3), (2, 1)]) == [(1, 3), (2, 1)]
