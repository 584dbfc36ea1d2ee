"""Post-training data: SFT and preference files, their tokenisation, and padded batches.

An SFT file is JSON lines with `prompt` and `response`; a preference file is JSON lines with
`prompt`, `chosen` and `rejected` (trl's field names). The prompt and a completion are
joined with one space and tokenised together; the completion starts where that sequence
and the prompt alone stop agreeing (as trl's DPO trainer does, so tokens merging across
the boundary cannot shift it), and ends with the end-of-sequence token. Losses see the
completion tokens only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from federation.errors import DataError
from llm_modules.jsonl import read_records


@dataclass(frozen=True)
class SFTExample:
    """An instruction (prompt) and the response to imitate."""

    prompt: str
    response: str


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred (`chosen`) and a dispreferred (`rejected`) response."""

    prompt: str
    chosen: str
    rejected: str


def save_jsonl(records: Sequence[SFTExample | PreferencePair], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record)) + "\n")
    return out


def load_sft(path: str | Path, role: str = "SFT") -> list[SFTExample]:
    """Read an SFT file; a bad line or an empty file is a one-line DataError."""
    rows = read_records(path, ("prompt", "response"), role)
    return [SFTExample(r["prompt"], r["response"]) for r in rows.values()]


def load_preferences(path: str | Path, role: str = "preference") -> list[PreferencePair]:
    """Read a preference file; identical chosen and rejected responses are refused (such a
    pair carries no preference and contributes a constant log 2 to the loss)."""
    rows = read_records(path, ("prompt", "chosen", "rejected"), role)
    for line_no, row in rows.items():
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{path}:{line_no}: chosen and rejected are the same response")
    return [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in rows.values()]


@dataclass(frozen=True)
class TokenizedSFT:
    prompt_ids: list[int]
    completion_ids: list[int]  # the response and the end-of-sequence token


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def _split(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completions: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """Prompt ids and each completion's ids (with EOS), cut where the token sequences of
    the prompt and of prompt + completion diverge."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    fulls = [tokenizer(f"{prompt} {c}", add_special_tokens=False)["input_ids"] for c in completions]
    cut = min(_common_prefix(prompt_ids, full) for full in fulls)
    return prompt_ids[:cut], [full[cut:] + [tokenizer.eos_token_id] for full in fulls]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def tokenize_sft(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[SFTExample]
) -> list[TokenizedSFT]:
    rows = []
    for example in examples:
        prompt_ids, (completion,) = _split(tokenizer, example.prompt, [example.response])
        rows.append(TokenizedSFT(prompt_ids, completion))
    return rows


def tokenize_preferences(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair]
) -> list[TokenizedPair]:
    rows = []
    for pair in pairs:
        prompt_ids, (chosen, rejected) = _split(
            tokenizer, pair.prompt, [pair.chosen, pair.rejected]
        )
        rows.append(TokenizedPair(prompt_ids, chosen, rejected))
    return rows


@dataclass
class SequenceBatch:
    """Right-padded sequences; `completion_mask` marks the tokens the losses score."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor

    def to(self, device: torch.device) -> SequenceBatch:
        return SequenceBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.completion_mask.to(device),
        )


def sft_batch(
    rows: Sequence[TokenizedSFT], pad_id: int, max_length: int | None = None
) -> SequenceBatch:
    """One padded batch of prompt + response sequences (truncated from the end)."""
    ids = [(r.prompt_ids + r.completion_ids)[:max_length] for r in rows]
    marks = [([0] * len(r.prompt_ids) + [1] * len(r.completion_ids))[:max_length] for r in rows]
    return SequenceBatch(
        pad([torch.tensor(i) for i in ids], padding_value=pad_id),
        pad([torch.ones(len(i), dtype=torch.long) for i in ids], padding_value=0),
        pad([torch.tensor(m, dtype=torch.long) for m in marks], padding_value=0),
    )


def preference_batch(
    rows: Sequence[TokenizedPair], pad_id: int, max_length: int | None = None
) -> SequenceBatch:
    """Chosen sequences then rejected ones in one padded batch (trl's preference collator,
    so one forward pass scores both halves)."""
    collate = DataCollatorForPreference(pad_token_id=pad_id, max_length=max_length)
    out = collate.torch_call(
        [{"prompt_ids": r.prompt_ids, "chosen_ids": r.chosen_ids, "rejected_ids": r.rejected_ids}
         for r in rows]
    )
    return SequenceBatch(out["input_ids"], out["attention_mask"], out["completion_mask"])
