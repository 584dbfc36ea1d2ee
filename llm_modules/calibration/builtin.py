"""The tiny LM of the built-in task: a small GPT-2 trained here, from scratch, on the task's
corpus (llm_modules/calibration/task.py), cached by its configuration."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from llm_modules.calibration.task import GENERATOR_VERSION, CorpusConfig, corpus, vocabulary_texts
from llm_modules.models import (
    TinyModelConfig,
    cache_dir,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)


@dataclass(frozen=True)
class TaskModelConfig:
    """Size of the tiny LM and of its pretraining run."""

    model: TinyModelConfig = field(
        default_factory=lambda: TinyModelConfig(layers=2, width=64, heads=4, max_positions=128)
    )
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    documents: int = 8000
    steps: int = 800
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps([GENERATOR_VERSION, asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def task_model_dir(config: TaskModelConfig, root: Path | None = None) -> Path:
    return (root or cache_dir() / "calibration-task") / config.key()


def build_task_model(
    config: TaskModelConfig,
    root: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Train the tiny LM on the task corpus, or reuse it from the cache; returns its path."""
    out = task_model_dir(config, root)
    if (out / "training.json").is_file():
        return out
    # One intra-op thread: the same weights whatever the caller's thread count (float
    # reductions differ across thread counts), and no spin-waiting on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(config, out, log)
    finally:
        torch.set_num_threads(threads)
    return out


def _train(config: TaskModelConfig, out: Path, log: Callable[[str], None]) -> None:
    started = time.perf_counter()
    documents = corpus(config.corpus, config.documents, config.seed)
    tokenizer = word_level_tokenizer(vocabulary_texts())
    model = tiny_causal_lm(config.model, tokenizer, seed=config.seed)
    encoded = [tokenizer(d)["input_ids"] for d in documents]
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps
    )
    model.train()
    recent: list[float] = []
    for step in range(config.steps):
        picks = torch.randint(len(encoded), (config.batch,), generator=generator).tolist()
        ids, mask = _pad([encoded[i] for i in picks], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if (step + 1) % 200 == 0:
            log(f"task LM step {step + 1}/{config.steps}: loss {sum(recent) / len(recent):.3f}")
    model.eval()
    save_causal_lm(model, tokenizer, out)
    meta = {"config": asdict(config), "final_loss": sum(recent) / len(recent),
            "seconds": time.perf_counter() - started}
    (out / "training.json").write_text(json.dumps(meta, indent=1))


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask
