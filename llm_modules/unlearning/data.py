"""Question-answer facts (TOFU's record shape), their files, and tokenised batches.

A fact file is JSON lines, one object per fact with `question`, `answer`,
`paraphrased_answer`, `perturbed_answers` (a list) and `attributes` (an object of strings).
Only `question` and `answer` are needed to unlearn; evaluation needs the rest.
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


def load_facts(path: str | Path, *, for_eval: bool = False, role: str = "facts") -> list[Fact]:
    """Read a fact file; a missing field or an empty file is a one-line DataError."""
    where = Path(path)
    if not where.is_file():
        raise DataError(f"{role} file {str(path)!r} does not exist")
    required = ["question", "answer"]
    if for_eval:
        required += ["paraphrased_answer", "perturbed_answers"]
    facts = []
    with where.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}:{line_no}: not valid JSON ({exc.msg})") from exc
            facts.append(_fact_from_record(record, required, f"{where}:{line_no}"))
    if not facts:
        raise DataError(f"{role} file {str(path)!r} is empty: the split has no facts")
    return facts


def _fact_from_record(record: object, required: list[str], where: str) -> Fact:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per line")
    missing = [name for name in required if not record.get(name)]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)} (expected {required})")
    perturbed = record.get("perturbed_answers", [])
    if not isinstance(perturbed, list):
        raise DataError(f"{where}: perturbed_answers must be a list of strings")
    return Fact(
        question=str(record["question"]),
        answer=str(record["answer"]),
        paraphrased_answer=str(record.get("paraphrased_answer", "")),
        perturbed_answers=tuple(str(text) for text in perturbed),
        attributes={str(k): str(v) for k, v in dict(record.get("attributes", {})).items()},
    )


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
    tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], answers: Sequence[str]
) -> QABatch:
    """Tokenise `question answer<eos>` pairs; the loss sees only the answer and <eos>."""
    rows: list[tuple[list[int], list[int]]] = []
    for question, answer in zip(questions, answers, strict=True):
        prompt = tokenizer(question, add_special_tokens=False)["input_ids"]
        full = tokenizer(f"{question} {answer}", add_special_tokens=False)["input_ids"]
        full = full + [tokenizer.eos_token_id]
        labels = [IGNORE] * len(prompt) + full[len(prompt) :]
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


def encode_facts(tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact]) -> QABatch:
    return encode_pairs(tokenizer, [f.question for f in facts], [f.answer for f in facts])


def batches(facts: Sequence[Fact], size: int) -> list[list[Fact]]:
    return [list(facts[i : i + size]) for i in range(0, len(facts), size)]
