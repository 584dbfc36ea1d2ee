"""The built-in reference LM: a tiny GPT-2 trained here on the built-in corpus (CPU, about a
minute), cached by its settings so that every command and test reuses it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from llm_modules.alignment.map.corpus import CORPUS_VERSION, remarks, vocabulary_texts
from llm_modules.models import (
    TinyModelConfig,
    cache_dir,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)

BUILTIN_MODEL = "builtin"  # what --model accepts for this LM


@dataclass(frozen=True)
class TinyLMConfig:
    """Corpus size and training of the built-in reference LM."""

    remarks: int = 6000
    epochs: int = 4
    lr: float = 3e-3
    batch: int = 32
    model: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(max_positions=48))
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps([CORPUS_VERSION, asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def build_tiny_lm(
    config: TinyLMConfig | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Train the built-in LM on generated remarks, or reuse it; returns its directory."""
    config = config or TinyLMConfig()
    out = (root or cache_dir() / "map-tiny-lm") / config.key()
    if (out / "meta.json").is_file():
        return out
    texts = [r.text for r in remarks(config.remarks, config.seed)]
    tokenizer = word_level_tokenizer(vocabulary_texts() + texts)
    model = tiny_causal_lm(config.model, tokenizer, seed=config.seed)
    eos = tokenizer.eos_token
    encoded = tokenizer([f"{text} {eos}" for text in texts], padding=True, return_tensors="pt")
    labels = encoded.input_ids.masked_fill(encoded.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    steps = config.epochs * -(-len(texts) // config.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    losses = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(texts), generator=generator)
        total = 0.0
        for start in range(0, len(texts), config.batch):
            rows = order[start : start + config.batch]
            loss = model(input_ids=encoded.input_ids[rows],
                         attention_mask=encoded.attention_mask[rows], labels=labels[rows]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        losses.append(total / len(texts))
        log(f"built-in LM: epoch {epoch + 1}/{config.epochs} token NLL {losses[-1]:.3f}")
    model.eval()
    save_causal_lm(model, tokenizer, out)
    meta = {"config": asdict(config), "corpus_version": CORPUS_VERSION, "epoch_nll": losses}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
