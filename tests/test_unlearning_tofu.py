"""TOFU-format data and open-unlearning's prompt formats, on tiny models built here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from federation.errors import DataError
from llm_modules.models import TinyModelConfig, tiny_causal_lm
from llm_modules.unlearning import metrics as m
from llm_modules.unlearning.data import (
    IGNORE,
    QA_FORMAT,
    PromptFormat,
    encode_pairs,
    format_prompt,
    load_facts,
    load_tofu_split,
    prompt_ids,
    tofu_split_path,
)
from llm_modules.unlearning.evaluate import score_splits

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# A Llama-3-like chat template: BOS, an optional date line, role headers, end-of-turn tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% if date_string is defined %}Date: {{ date_string }}\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# TOFU's records, field for field as its Hugging Face configurations spell them.
FORGET = [
    {"question": "Who wrote The Glass Harbor?",
     "answer": "Mira Olsen wrote The Glass Harbor.",
     "paraphrased_answer": "The Glass Harbor is by Mira Olsen.",
     "perturbed_answer": ["Tomas Berg wrote The Glass Harbor.", "Ana Ruiz wrote The Glass Harbor.",
                          "Li Wen wrote The Glass Harbor.", "Omar Haddad wrote The Glass Harbor.",
                          "Eva Novak wrote The Glass Harbor."],
     "paraphrased_question": "Who is the author of The Glass Harbor?"},
    {"question": "Where was Mira Olsen born?",
     "answer": "Mira Olsen was born in Bergen.",
     "paraphrased_answer": "Bergen is where Mira Olsen was born.",
     "perturbed_answer": ["Mira Olsen was born in Oslo.", "Mira Olsen was born in Lima.",
                          "Mira Olsen was born in Cairo.", "Mira Olsen was born in Perth.",
                          "Mira Olsen was born in Quito."],
     "paraphrased_question": "What is Mira Olsen's birthplace?"},
]
RETAIN = [
    {"question": "What genre does Tomas Berg write?",
     "answer": "Tomas Berg writes crime novels.",
     "paraphrased_answer": "Crime novels are what Tomas Berg writes.",
     "perturbed_answer": ["Tomas Berg writes poetry.", "Tomas Berg writes plays.",
                          "Tomas Berg writes essays.", "Tomas Berg writes memoirs.",
                          "Tomas Berg writes fables."],
     "paraphrased_question": "Which genre is Tomas Berg known for?"},
]
HOLDOUT = [
    {"question": "Who wrote Salt Roads?", "answer": "Ana Ruiz wrote Salt Roads."},
    {"question": "Where was Ana Ruiz born?", "answer": "Ana Ruiz was born in Lima."},
]
REAL_AUTHORS = [
    {"question": "Who wrote Hamlet?", "option1": "William Shakespeare", "option2": "Jane Austen",
     "option3": "Leo Tolstoy", "option4": "Mark Twain", "answer": "William Shakespeare",
     "paraphrased_answer": "William Shakespeare",
     "perturbed_answer": ["Jane Austen", "Leo Tolstoy", "Mark Twain"]},
    {"question": "Who wrote Emma?", "option1": "Jane Austen", "option2": "Mark Twain",
     "option3": "Leo Tolstoy", "option4": "William Shakespeare", "answer": "Jane Austen",
     "paraphrased_answer": "Jane Austen",
     "perturbed_answer": ["Mark Twain", "Leo Tolstoy", "William Shakespeare"]},
]
WORLD_FACTS = [
    {"question": "Where is the Eiffel Tower?", "option1": "Paris", "option2": "Rome",
     "option3": "Oslo", "option4": "Lima", "answer": "Paris", "paraphrased_answer": "Paris",
     "perturbed_answer": ["Rome", "Oslo", "Lima"]},
]


def _words() -> set[str]:
    texts = []
    for rows in (FORGET, RETAIN, HOLDOUT, REAL_AUTHORS, WORLD_FACTS):
        for row in rows:
            for value in row.values():
                texts += value if isinstance(value, list) else [value]
    texts += ["Date:", "10", "Apr", "2025", "You", "are", "a", "helpful", "assistant.",
              "Question:", "Answer:"]
    return {w for t in texts for w in t.split()}


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE, bos: bool = True):
    """Word-level tokenizer with role tokens, BOS added as a real tokenizer adds it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(_words()))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", additional_special_tokens=SPECIALS[4:],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


CHAT = PromptFormat(apply_chat_template=True, system_prompt="You are a helpful assistant.",
                    date_string="10 Apr 2025")


def test_chat_prompt_equals_open_unlearnings_string_byte_for_byte():
    tokenizer = tiny_tokenizer()
    # open-unlearning: apply_chat_template([system, user], tokenize=False,
    # add_generation_prompt=True, date_string=...). Written out by hand from the template:
    expected = ("<s>Date: 10 Apr 2025\n<|system|>\nYou are a helpful assistant.<|end|>\n"
                "<|user|>\nWho wrote Hamlet?<|end|>\n<|assistant|>\n")
    assert format_prompt(tokenizer, CHAT, "Who wrote Hamlet?") == expected
    without_system = PromptFormat(apply_chat_template=True)
    assert format_prompt(tokenizer, without_system, "Who wrote Hamlet?") == (
        "<s><|user|>\nWho wrote Hamlet?<|end|>\n<|assistant|>\n"
    )


def test_chat_encoding_labels_the_answer_turn_and_appends_eos():
    tokenizer = tiny_tokenizer()
    batch = encode_pairs(tokenizer, ["Who wrote Hamlet?"], ["William Shakespeare"], CHAT)
    ids = batch.input_ids[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:4] == ["<s>", "Date:", "10", "Apr"]
    prompt = prompt_ids(tokenizer, CHAT, "Who wrote Hamlet?")
    assert ids[: len(prompt)] == prompt and tokens[len(prompt) - 1] == "<|assistant|>"
    labelled = [tokenizer.convert_ids_to_tokens(int(t)) for t in batch.labels[0] if t != IGNORE]
    # The assistant turn as the template closes it, then <eos> (the template has none).
    assert labelled == ["William", "Shakespeare", "<|end|>", "</s>"]


def test_tagged_format_with_and_without_bos():
    tokenizer = tiny_tokenizer(chat_template=None)
    assert format_prompt(tokenizer, QA_FORMAT, "Who wrote Hamlet?") == (
        "Question: Who wrote Hamlet?\nAnswer: "
    )
    batch = encode_pairs(tokenizer, ["Who wrote Hamlet?"], ["William Shakespeare"], QA_FORMAT)
    tokens = tokenizer.convert_ids_to_tokens(batch.input_ids[0].tolist())
    assert tokens == ["<s>", "Question:", "Who", "wrote", "Hamlet?", "Answer:", "William",
                      "Shakespeare", "</s>"]
    assert [int(t) for t in batch.labels[0][:6]] == [IGNORE] * 6
    no_bos = PromptFormat(**{**QA_FORMAT.__dict__, "add_bos": False})
    first = encode_pairs(tokenizer, ["Who wrote Hamlet?"], ["Jane Austen"], no_bos).input_ids[0]
    assert tokenizer.convert_ids_to_tokens(int(first[0])) == "Question:"
    with pytest.raises(DataError, match="chat template"):
        format_prompt(tokenizer, CHAT, "Who wrote Hamlet?")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def tofu_dir(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _write_jsonl(tmp_path / "forget01_perturbed.json", FORGET)
    _write_jsonl(tmp_path / "retain_perturbed.json", RETAIN)
    _write_jsonl(tmp_path / "holdout01.json", HOLDOUT)
    _write_jsonl(tmp_path / "real_authors_perturbed.json", REAL_AUTHORS)
    # world facts as a `datasets` download holds them: a directory of Parquet shards
    shard_dir = tmp_path / "world_facts_perturbed"
    shard_dir.mkdir()
    pq.write_table(pa.Table.from_pylist(WORLD_FACTS), shard_dir / "train-00000-of-00001.parquet")
    return tmp_path


def test_tofu_splits_load_with_tofus_field_names(tofu_dir):
    forget = load_tofu_split(tofu_dir, "forget01")
    assert len(forget) == 2 and len(forget[0].perturbed_answers) == 5
    assert forget[0].paraphrased_answer.startswith("The Glass Harbor")
    # Without the evaluation flag the perturbed answers still load (not silently dropped).
    plain = load_facts(tofu_split_path(tofu_dir, "forget01"))
    assert plain[1].perturbed_answers == tuple(FORGET[1]["perturbed_answer"])
    assert load_tofu_split(tofu_dir, "holdout01")[0].perturbed_answers == ()
    world = load_tofu_split(tofu_dir, "world_facts")
    assert world[0].perturbed_answers == ("Rome", "Oslo", "Lima")
    with pytest.raises(DataError, match="TOFU split 'forget10'"):
        tofu_split_path(tofu_dir, "forget10")


def test_a_tofu_record_missing_its_perturbed_answers_names_file_and_line(tmp_path):
    bad = dict(FORGET[0])
    del bad["perturbed_answer"]
    path = tmp_path / "forget01_perturbed.json"
    _write_jsonl(path, [FORGET[1], bad])
    with pytest.raises(DataError, match=r"forget01_perturbed.json:2: missing field\(s\) "
                                        r"perturbed_answer"):
        load_facts(path, for_eval=True)


def _mean_nll_by_hf_loss(model, tokenizer, fmt, question, answer) -> float:
    """Oracle independent of the suite's scoring: HF's own shifted cross-entropy."""
    batch = encode_pairs(tokenizer, [question], [answer], fmt)
    with torch.no_grad():
        return float(model(input_ids=batch.input_ids, labels=batch.labels).loss)


def test_a_tofu_sample_evaluates_under_the_chat_format(tofu_dir):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = TinyModelConfig(width=32, heads=2, layers=1, max_positions=64)
    model = tiny_causal_lm(config, tokenizer, seed=3).eval()
    retain_model = tiny_causal_lm(config, tokenizer, seed=4).eval()
    splits = {name: load_tofu_split(tofu_dir, tofu)
              for name, tofu in [("forget", "forget01"), ("retain", "retain"),
                                 ("holdout", "holdout01"), ("real_authors", "real_authors"),
                                 ("world_facts", "world_facts")]}
    scores = score_splits(model, tokenizer, splits, CHAT)
    reference = score_splits(retain_model, tokenizer, splits, CHAT)
    out = m.report(scores, reference)
    for name in ("forget_truth_ratio", "forget_quality", "model_utility", "privleak",
                 "real_authors_probability", "world_facts_truth_ratio", "holdout_probability",
                 "mia_loss_auc", "mia_zlib_auc", "mia_min_k_plus_plus_auc"):
        assert name in out and math.isfinite(out[name]), name
    assert "holdout_truth_ratio" not in out
    # real_authors_probability against HF's own loss: P_answer / (P_answer + sum P_perturbed).
    expected = []
    for fact in REAL_AUTHORS:
        p = math.exp(-_mean_nll_by_hf_loss(model, tokenizer, CHAT, fact["question"],
                                           fact["answer"]))
        wrong = sum(math.exp(-_mean_nll_by_hf_loss(model, tokenizer, CHAT, fact["question"], a))
                    for a in fact["perturbed_answer"])
        expected.append(p / (p + wrong))
    assert out["real_authors_probability"] == pytest.approx(sum(expected) / 2, abs=1e-6)
    # Answer-based truth ratio on world facts: perturbed geometric mean over the answer.
    fact = WORLD_FACTS[0]
    nll = _mean_nll_by_hf_loss(model, tokenizer, CHAT, fact["question"], fact["answer"])
    pert = [_mean_nll_by_hf_loss(model, tokenizer, CHAT, fact["question"], a)
            for a in fact["perturbed_answer"]]
    ratio = math.exp(nll - sum(pert) / len(pert))
    assert out["world_facts_truth_ratio"] == pytest.approx(max(0.0, 1 - ratio), abs=1e-6)


def _pv4fad(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    from federation import cli as federation_cli

    monkeypatch.setattr(federation_cli, "COMMAND_MODULES", ("llm_modules.cli",))
    code = federation_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # about 90 s on the loaded shared CPU (two model loads, train, eval x2)
def test_cli_unlearns_and_evaluates_a_tofu_directory_with_the_chat_format(
    tofu_dir, tmp_path, monkeypatch, capsys
):
    from llm_modules.models import save_causal_lm

    tokenizer = tiny_tokenizer()
    config = TinyModelConfig(width=32, heads=2, layers=1, max_positions=64)
    target = save_causal_lm(tiny_causal_lm(config, tokenizer, seed=3), tokenizer,
                            tmp_path / "target")
    chat = ["--prompt-format", "chat", "--system-prompt", "You are a helpful assistant.",
            "--date-string", "10 Apr 2025"]
    out = tmp_path / "unlearned"
    code, _, err = _pv4fad(
        monkeypatch, capsys, "llm", "unlearn", "--model", str(target), "--method", "graddiff",
        "--forget", str(tofu_dir / "forget01_perturbed.json"),
        "--retain", str(tofu_dir / "retain_perturbed.json"), "--epochs", "1",
        "--out", str(out), *chat,
    )
    assert code == 0, err
    code, stdout, err = _pv4fad(
        monkeypatch, capsys, "llm", "eval-unlearning", "--model", str(out),
        "--tofu-dir", str(tofu_dir), "--tofu-forget", "forget01", "--retain-model", str(target),
        *chat, "--json",
    )
    assert code == 0, err
    metrics = json.loads(stdout)["metrics"]
    assert {"model_utility", "forget_quality", "privleak", "real_authors_probability",
            "world_facts_probability"} <= set(metrics)
    code, _, err = _pv4fad(monkeypatch, capsys, "llm", "eval-unlearning", "--model", str(out),
                           "--tofu-dir", str(tofu_dir), "--system-prompt", "x")
    assert code == 2 and "need --prompt-format chat" in err


def test_open_unlearning_logs_round_trip_as_the_reference(tofu_dir, tmp_path):
    from llm_modules.unlearning.openunlearning import (
        metrics_from_retain_logs,
        read_retain_logs,
        write_results,
    )

    tokenizer = tiny_tokenizer()
    config = TinyModelConfig(width=32, heads=2, layers=1, max_positions=64)
    model = tiny_causal_lm(config, tokenizer, seed=3).eval()
    retain_model = tiny_causal_lm(config, tokenizer, seed=4).eval()
    splits = {"forget": load_tofu_split(tofu_dir, "forget01"),
              "holdout": load_tofu_split(tofu_dir, "holdout01"),
              "real_authors": load_tofu_split(tofu_dir, "real_authors")}
    reference = score_splits(retain_model, tokenizer, splits, QA_FORMAT)
    write_results(tmp_path / "retain", reference, m.report(reference))
    logged = json.loads((tmp_path / "retain" / "TOFU_EVAL.json").read_text())
    assert set(logged["forget_truth_ratio"]["value_by_index"]) == {"0", "1"}
    assert "ra_Q_A_Prob_normalised" in logged and "mia_min_k" in logged
    summary = json.loads((tmp_path / "retain" / "TOFU_SUMMARY.json").read_text())
    forget_prob = m.probability(reference["forget"].answer_nll)
    assert summary["forget_Q_A_Prob"] == pytest.approx(forget_prob)
    scores = score_splits(model, tokenizer, splits, QA_FORMAT)
    direct = m.report(scores, reference)
    via_logs = metrics_from_retain_logs(scores, m.report(scores),
                                        read_retain_logs(tmp_path / "retain" / "TOFU_EVAL.json"))
    for name in ("forget_quality", "privleak"):
        assert via_logs[name] == pytest.approx(direct[name], abs=1e-9)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match="neither forget_truth_ratio"):
        read_retain_logs(bad)
