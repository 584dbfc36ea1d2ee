"""Question-answer facts (TOFU's record shape), their files, and tokenised batches.

A fact file is JSON lines (or a JSON array, or Parquet), one record per fact with
`question`, `answer`, `paraphrased_answer`, the perturbed answers (a list, spelt
`perturbed_answer` as TOFU spells it, or `perturbed_answers`) and `attributes` (an object of
strings). Only `question` and `answer` are needed to unlearn; evaluation needs the rest
(real-authors / world-facts style splits need no paraphrase). Other fields are ignored,
so TOFU's files load as they are.

Prompts: by default `question answer<eos>` (the built-in benchmark's format); a
`PromptFormat` reproduces open-unlearning's tagged or chat-template prompts exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from federation.errors import DataError

IGNORE = -100  # label value that the loss skips (question tokens, padding)


@dataclass(frozen=True)
class Fact:
    """One question about an entity with its answer and TOFU's evaluation variants."""

    question: str
    answer: str
    paraphrased_answer: str = ""
    perturbed_answers: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)


def save_facts(facts: Sequence[Fact], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for fact in facts:
            record = asdict(fact)
            record["perturbed_answers"] = list(fact.perturbed_answers)
            handle.write(json.dumps(record) + "\n")
    return out


PERTURBED_KEYS = ("perturbed_answer", "perturbed_answers")  # TOFU's spelling first


def load_facts(
    path: str | Path,
    *,
    for_eval: bool = False,
    role: str = "facts",
    answer_based: bool = False,
    needs_perturbed: bool = True,
) -> list[Fact]:
    """Read a fact file (JSON lines, a JSON array, Parquet, or a directory of Parquet shards
    as a `datasets` download holds them); a missing field or an empty file is a one-line
    DataError naming the file and record. `for_eval` requires the perturbed answers and,
    unless `answer_based` (real authors, world facts), the paraphrased answer; holdout sets
    (`needs_perturbed` false) need neither."""
    where = Path(path)
    if not where.exists():
        raise DataError(f"{role} file {str(path)!r} does not exist")
    required = ["question", "answer"]
    if for_eval and needs_perturbed:
        if not answer_based:
            required.append("paraphrased_answer")
        required.append("perturbed_answer")
    facts = [
        _fact_from_record(record, required, f"{label}")
        for label, record in _records(where)
    ]
    if not facts:
        raise DataError(f"{role} file {str(path)!r} is empty: the split has no facts")
    return facts


def _records(where: Path):
    """(location, record) pairs of a JSON-lines / JSON-array / Parquet file or directory."""
    if where.is_dir():
        shards = sorted(where.rglob("*.parquet"))
        if not shards:
            raise DataError(f"{where}: a directory of facts must hold .parquet files")
        for shard in shards:
            yield from _records(shard)
        return
    if where.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(where).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{where}: not a readable Parquet file ({exc})") from exc
        for row_no, row in enumerate(rows, start=1):
            yield f"{where}:row {row_no}", row
        return
    text = where.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not a valid JSON array ({exc.msg})") from exc
        for row_no, row in enumerate(rows, start=1):
            yield f"{where}:record {row_no}", row
        return
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{line_no}: not valid JSON ({exc.msg})") from exc
        yield f"{where}:{line_no}", record


def _fact_from_record(record: object, required: list[str], where: str) -> Fact:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per line")
    key = next((k for k in PERTURBED_KEYS if k in record), PERTURBED_KEYS[0])
    missing = [
        name for name in required
        if not record.get(key if name == "perturbed_answer" else name)
    ]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)} (expected {required}; the "
            f"perturbed answers may be spelt {' or '.join(PERTURBED_KEYS)})"
        )
    perturbed = record.get(key) or []
    if isinstance(perturbed, str):
        perturbed = [perturbed]
    if not isinstance(perturbed, list | tuple) or not all(isinstance(a, str) for a in perturbed):
        raise DataError(f"{where}: {key} must be a list of strings")
    attributes = record.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise DataError(f"{where}: attributes must be an object of strings")
    return Fact(
        question=str(record["question"]),
        answer=str(record["answer"]),
        paraphrased_answer=str(record.get("paraphrased_answer") or ""),
        perturbed_answers=tuple(str(text) for text in perturbed),
        attributes={str(k): str(v) for k, v in attributes.items()},
    )


# TOFU's configurations (Hugging Face `locuslab/TOFU`): the evaluation files of each logical
# split, in the order tried. The *_perturbed files carry the paraphrased and perturbed answers.
TOFU_FILES = {
    **{f"forget{n}": (f"forget{n}_perturbed", f"forget{n}") for n in ("01", "05", "10")},
    **{f"holdout{n}": (f"holdout{n}",) for n in ("01", "05", "10")},
    **{f"retain{n}": (f"retain{n}",) for n in ("90", "95", "99")},
    "retain": ("retain_perturbed",),
    "real_authors": ("real_authors_perturbed", "real_authors"),
    "world_facts": ("world_facts_perturbed", "world_facts"),
}
TOFU_SUFFIXES = (".json", ".jsonl", ".parquet", "")  # "" : a directory of Parquet shards


def tofu_split_path(root: str | Path, name: str) -> Path:
    """The local file of TOFU split `name` (forget01/05/10, holdout01/05/10, retain,
    retain90/95/99, real_authors, world_facts, or any file stem such as
    forget10_perturbed) under `root`: `<stem>.json|.jsonl|.parquet` or a `<stem>/` directory
    of Parquet shards (a `datasets` download)."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"TOFU directory {str(root)!r} does not exist")
    stems = TOFU_FILES.get(name, (name,))
    for stem in stems:
        for suffix in TOFU_SUFFIXES:
            candidate = base / f"{stem}{suffix}"
            if candidate.is_file() or (suffix == "" and candidate.is_dir()):
                return candidate
    raise DataError(
        f"TOFU split {name!r}: none of {', '.join(s + '.json|.jsonl|.parquet|/' for s in stems)}"
        f" under {base}"
    )


def load_tofu_split(root: str | Path, name: str, *, for_eval: bool = True) -> list[Fact]:
    """A TOFU split as facts, with the fields each split carries in TOFU: holdout sets have
    no perturbed answers, real authors and world facts no paraphrase."""
    answer_based = name.startswith(("real_authors", "world_facts"))
    return load_facts(
        tofu_split_path(root, name), for_eval=for_eval, role=f"TOFU {name}",
        answer_based=answer_based, needs_perturbed=not name.startswith("holdout"),
    )


@dataclass(frozen=True)
class PromptFormat:
    """open-unlearning's prompt construction (its model configs' `template_args`).

    Tagged mode: `system_prompt_with_special_tokens + user_start_tag + question + user_end_tag
    + asst_start_tag`, then the answer, tokenised with the tokenizer's special tokens (its
    BOS) unless `add_bos` is false. Chat mode: the tokenizer's chat template over [system],
    user, assistant messages (`date_string` passed to the template when set); the prompt is
    the template without the last answer, with the generation prompt. In both, the answer's
    labels are the tokens after the prompt's, and <eos> is appended when the sequence does
    not end with it."""

    apply_chat_template: bool = False
    system_prompt: str | None = None
    system_prompt_with_special_tokens: str | None = None
    user_start_tag: str = ""
    user_end_tag: str = ""
    asst_start_tag: str = ""
    asst_end_tag: str = ""
    date_string: str | None = None
    add_bos: bool = True


# open-unlearning's format for base models (Llama-2, phi-1.5): "Question: ...\nAnswer: ..."
QA_FORMAT = PromptFormat(user_start_tag="Question: ", user_end_tag="\n",
                         asst_start_tag="Answer: ", asst_end_tag="\n\n")


def _chat(fmt: PromptFormat, question: str, answer: str | None) -> list[dict[str, str]]:
    chat = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    chat.append({"role": "user", "content": question})
    if answer is not None:
        chat.append({"role": "assistant", "content": answer})
    return chat


def _template_kwargs(fmt: PromptFormat) -> dict[str, str]:
    return {"date_string": fmt.date_string} if fmt.date_string is not None else {}


def format_prompt(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str) -> str:
    """The prompt string the model sees before the answer (what open-unlearning builds)."""
    if fmt.apply_chat_template:
        _require_template(tokenizer)
        return tokenizer.apply_chat_template(
            _chat(fmt, question, None), tokenize=False, add_generation_prompt=True,
            **_template_kwargs(fmt),
        )
    return (
        (fmt.system_prompt_with_special_tokens or "")
        + fmt.user_start_tag + question + fmt.user_end_tag + fmt.asst_start_tag
    )


def _require_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the chat prompt format needs a tokenizer with a chat template "
                        "(its tokenizer_config.json has none)")


def _ids(value: object) -> list[int]:
    # apply_chat_template returns a list, or a BatchEncoding in newer transformers.
    if isinstance(value, list):
        return list(value)
    return list(value["input_ids"])  # type: ignore[index]


def encode_example(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, answer: str
) -> tuple[list[int], int]:
    """(token ids of prompt + answer [+ <eos>], number of prompt tokens) under `fmt`."""
    if fmt.apply_chat_template:
        _require_template(tokenizer)
        full = _ids(tokenizer.apply_chat_template(
            _chat(fmt, question, answer), tokenize=True, add_generation_prompt=False,
            **_template_kwargs(fmt),
        ))
        prompt = prompt_ids(tokenizer, fmt, question)
    else:
        prompt_text = format_prompt(tokenizer, fmt, question)
        full = tokenizer(prompt_text + answer, add_special_tokens=fmt.add_bos)["input_ids"]
        prompt = tokenizer(prompt_text, add_special_tokens=fmt.add_bos)["input_ids"]
    full = list(full)
    if not full or full[-1] != tokenizer.eos_token_id:
        full.append(tokenizer.eos_token_id)
    return full, len(prompt)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat | None, question: str
) -> list[int]:
    """Token ids of the prompt alone (for generation)."""
    if fmt is None:
        return list(tokenizer(question, add_special_tokens=False)["input_ids"])
    if fmt.apply_chat_template:
        _require_template(tokenizer)
        return _ids(tokenizer.apply_chat_template(
            _chat(fmt, question, None), tokenize=True, add_generation_prompt=True,
            **_template_kwargs(fmt),
        ))
    return list(tokenizer(format_prompt(tokenizer, fmt, question),
                          add_special_tokens=fmt.add_bos)["input_ids"])


@dataclass
class QABatch:
    """Padded token ids with labels only on answer tokens (question and padding ignored)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> QABatch:
        return QABatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device)
        )


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    fmt: PromptFormat | None = None,
) -> QABatch:
    """Tokenise `question answer<eos>` pairs (or `fmt`'s prompts); the loss sees only the
    answer and <eos>."""
    rows: list[tuple[list[int], list[int]]] = []
    for question, answer in zip(questions, answers, strict=True):
        if fmt is None:
            prompt_len = len(tokenizer(question, add_special_tokens=False)["input_ids"])
            full = tokenizer(f"{question} {answer}", add_special_tokens=False)["input_ids"]
            full = full + [tokenizer.eos_token_id]
        else:
            full, prompt_len = encode_example(tokenizer, fmt, question, answer)
        labels = [IGNORE] * prompt_len + full[prompt_len:]
        rows.append((full, labels))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        attention[i, : len(ids)] = 1
    return QABatch(input_ids, attention, labels)


def encode_facts(
    tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact], fmt: PromptFormat | None = None
) -> QABatch:
    return encode_pairs(tokenizer, [f.question for f in facts], [f.answer for f in facts], fmt)


def batches(facts: Sequence[Fact], size: int) -> list[list[Fact]]:
    return [list(facts[i : i + size]) for i in range(0, len(facts), size)]
