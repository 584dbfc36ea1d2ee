"""Values computed by models: coherence and perplexity under the reference model, and any
Hugging Face sequence-classification reward model given by path.

A continuation is stored without surrounding spaces and joined to its prompt with one space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from federation.errors import Pv4fadError
from llm_modules.alignment.map.rewards import (
    VALUES,
    ScoringContext,
    ValueScorer,
    register_value,
)
from llm_modules.models import ModelError, choose_device


def _batches(n: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, n, size)]


class CoherenceValue(ValueScorer):
    """Cosine similarity between the prompt's and the continuation's embeddings, each the
    mean of the reference model's last hidden states over its tokens (0 for an empty text)."""

    name = "coherence"

    def __init__(self, context: ScoringContext) -> None:
        self.context = context

    @torch.no_grad()
    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        model, tokenizer = self.context.reference_model()
        tokenizer.padding_side = "right"
        encoded = tokenizer(list(texts), padding=True, return_tensors="pt").to(model.device)
        if encoded.input_ids.shape[1] == 0:
            return torch.zeros(len(texts), 1)
        hidden = model(**encoded, output_hidden_states=True).hidden_states[-1].float()
        mask = encoded.attention_mask.unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu()

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(prompts))
        for part in _batches(len(prompts), self.context.batch_size):
            similarity = F.cosine_similarity(self._embed(prompts[part]),
                                             self._embed(continuations[part]), dim=-1)
            out[part] = similarity.numpy()
        return out


def continuation_nll(
    model: Any, tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL of each continuation and of the end-of-sequence token after it, given
    its prompt, and the number of tokens scored (differentiable: fine-tuning uses it)."""
    tokenizer.padding_side = "right"
    heads = [tokenizer(p).input_ids for p in prompts]
    tails = [tokenizer(f" {c}" if c else "", add_special_tokens=False).input_ids
             + [tokenizer.eos_token_id] for c in continuations]
    width = max(len(h) + len(t) for h, t in zip(heads, tails, strict=True))
    ids = torch.full((len(heads), width), tokenizer.pad_token_id)
    labels = torch.full((len(heads), width), -100)
    mask = torch.zeros((len(heads), width), dtype=torch.long)
    for row, (head, tail) in enumerate(zip(heads, tails, strict=True)):
        ids[row, : len(head) + len(tail)] = torch.tensor(head + tail)
        labels[row, len(head) : len(head) + len(tail)] = torch.tensor(tail)
        mask[row, : len(head) + len(tail)] = 1
    logits = model(input_ids=ids.to(model.device),
                   attention_mask=mask.to(model.device)).logits[:, :-1].float()
    targets = labels[:, 1:].to(logits.device)
    nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    valid = targets != -100
    return (nll * valid).sum(1), valid.sum(1)


class PerplexityValue(ValueScorer):
    """Minus the log-perplexity of the continuation given the prompt under the reference
    model: the mean log-probability of its tokens and of the end-of-sequence token (which is
    scored so that an empty continuation is no free perfect score)."""

    name = "perplexity"

    def __init__(self, context: ScoringContext) -> None:
        self.context = context

    @torch.no_grad()
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        model, tokenizer = self.context.reference_model()
        out = np.zeros(len(prompts))
        for part in _batches(len(prompts), self.context.batch_size):
            total, count = continuation_nll(model, tokenizer, prompts[part], continuations[part])
            out[part] = (-total / count).cpu().numpy()
        return out


@register_value("coherence")
def _coherence(context: ScoringContext) -> ValueScorer:
    return CoherenceValue(context)


@register_value("perplexity")
def _perplexity(context: ScoringContext) -> ValueScorer:
    return PerplexityValue(context)


READS = ("raw", "logit:K", "prob:K")


@dataclass(frozen=True)
class RewardModelSpec:
    """A sequence-classification reward model by path, how its score is read and the
    prompt format: `pair` (prompt and continuation as a text pair) or a template with
    `{prompt}` and `{continuation}`."""

    name: str
    path: str
    read: str = "raw"
    format: str = "{prompt} {continuation}"

    @classmethod
    def parse(cls, text: str) -> RewardModelSpec:
        """`name=NAME;path=DIR[;read=raw|logit:K|prob:K][;format=pair|TEMPLATE]`."""
        fields: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in ("name", "path", "read", "format"):
                raise Pv4fadError(f"--reward-model {text!r}: expected name=...;path=...[;read="
                                  f"...][;format=...], found {part!r}")
            fields[key.strip()] = value
        for key in ("name", "path"):
            if not fields.get(key):
                raise Pv4fadError(f"--reward-model {text!r}: {key}= is missing")
        spec = cls(**fields)
        spec.check()
        return spec

    def check(self) -> None:
        kind, _, index = self.read.partition(":")
        if not (self.read == "raw" or (kind in ("logit", "prob") and index.isdigit())):
            raise Pv4fadError(f"reward model {self.name!r}: read {self.read!r} is not one of "
                              f"{', '.join(READS)}")
        if self.format != "pair" and "{continuation}" not in self.format:
            raise Pv4fadError(f"reward model {self.name!r}: format must be 'pair' or a "
                              "template containing {continuation}")
        if self.name in VALUES:
            raise Pv4fadError(f"reward model name {self.name!r} is a built-in value's name")

    def build(self, context: ScoringContext) -> ValueScorer:
        return RewardModelValue(self, context.batch_size)


class RewardModelValue(ValueScorer):
    """The score a Hugging Face sequence-classification model gives each pair."""

    def __init__(self, spec: RewardModelSpec, batch_size: int) -> None:
        self.name, self.spec_, self.batch_size = spec.name, spec, batch_size
        self.model, self.tokenizer = _load_classifier(spec.path)
        kind, _, index = spec.read.partition(":")
        labels = self.model.config.num_labels
        if (kind == "raw" and labels != 1) or (index and int(index) >= labels):
            raise ModelError(f"reward model {spec.name!r} at {spec.path!r} has {labels} "
                             f"output(s): read {spec.read!r} does not fit (use "
                             f"{'raw' if labels == 1 else f'logit:0..{labels - 1}'})")

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "reward-model", "path": self.spec_.path,
                "read": self.spec_.read, "format": self.spec_.format}

    @torch.no_grad()
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(prompts))
        kind, _, index = self.spec_.read.partition(":")
        for part in _batches(len(prompts), self.batch_size):
            if self.spec_.format == "pair":
                encoded = self.tokenizer(list(prompts[part]), list(continuations[part]),
                                         padding=True, truncation=True, return_tensors="pt")
            else:
                texts = [self.spec_.format.format(prompt=p, continuation=c)
                         for p, c in zip(prompts[part], continuations[part], strict=True)]
                encoded = self.tokenizer(texts, padding=True, truncation=True,
                                         return_tensors="pt")
            logits = self.model(**encoded.to(self.model.device)).logits.float().cpu()
            column = 0 if kind == "raw" else int(index)
            if kind == "prob":
                probs = logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(-1)
                out[part] = probs[:, column].numpy()
            else:
                out[part] = logits[:, column].numpy()
        return out


def _load_classifier(path: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    where = Path(path)
    if not (where / "config.json").is_file():
        raise ModelError(f"reward model path {path!r} is not a saved Hugging Face model "
                         "(no config.json)")
    device = choose_device()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            where, local_files_only=True, dtype=device.dtype)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load a sequence-classification model from {path!r}: "
                         f"{first}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.config.pad_token_id is None:
        # Decoder classifiers read the last non-pad token and must know the pad id.
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device.device).eval(), tokenizer
