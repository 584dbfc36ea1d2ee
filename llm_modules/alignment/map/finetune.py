"""Realising the aligned model by fine-tuning the reference model on its own samples.

`dpo`: trl's DPOTrainer on pairs from each prompt's samples ranked by lambda . r (the best
against the worst, the second best against the second worst, ...), the reference model as
DPO's reference. `weighted-sft`: next-token NLL of every sample weighted by its
self-normalised importance weight softmax(lambda . r) within its prompt, which minimises
an estimate of KL(p_lambda || p_theta): it fits p_lambda itself. Either saves a model
directory that `load_causal_lm` reads.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from federation.errors import Pv4fadError
from llm_modules.alignment.map.model_rewards import continuation_nll
from llm_modules.alignment.map.samples import SampleSet
from llm_modules.models import save_causal_lm

FINETUNE_METHODS = ("dpo", "weighted-sft")


@dataclass(frozen=True)
class FinetuneSettings:
    method: str = "weighted-sft"
    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 32
    beta: float = 0.1  # DPO inverse temperature
    pairs_per_prompt: int = 4  # DPO pairs drawn from each prompt's ranked samples
    seed: int = 0

    def check(self) -> None:
        if self.method not in FINETUNE_METHODS:
            raise Pv4fadError(f"unknown fine-tuning method {self.method!r} (expected "
                              f"{' or '.join(FINETUNE_METHODS)})")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.beta <= 0:
            raise Pv4fadError("need --epochs >= 1, --batch-size >= 1, --lr > 0, --beta > 0")


def _by_prompt(samples: SampleSet) -> dict[int, np.ndarray]:
    return {int(i): np.flatnonzero(samples.prompt_index == i)
            for i in np.unique(samples.prompt_index)}


def preference_pairs(
    samples: SampleSet, combined: np.ndarray, per_prompt: int
) -> list[dict[str, str]]:
    """Per prompt: i-th best against i-th worst by `combined` = lambda . r, ties left out."""
    pairs = []
    for index, rows in _by_prompt(samples).items():
        ranked = rows[np.argsort(-combined[rows], kind="stable")]
        for k in range(min(per_prompt, len(ranked) // 2)):
            best, worst = ranked[k], ranked[-1 - k]
            if combined[best] > combined[worst]:
                pairs.append({"prompt": samples.prompts[index],
                              "chosen": " " + samples.continuations[best],
                              "rejected": " " + samples.continuations[worst]})
    return pairs


def prompt_weights(samples: SampleSet, combined: np.ndarray) -> np.ndarray:
    """softmax(lambda . r) within each prompt, scaled to average 1 over the samples."""
    weights = np.zeros(len(samples))
    for rows in _by_prompt(samples).values():
        logits = combined[rows] - combined[rows].max()
        weights[rows] = np.exp(logits) / np.exp(logits).sum() * len(rows)
    return weights


def weighted_sft(
    model: Any, tokenizer: Any, samples: SampleSet, weights: np.ndarray,
    settings: FinetuneSettings, log: Callable[[str], None],
) -> None:
    """Importance-weighted maximum likelihood on the samples, in place."""
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(samples), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            nll, count = continuation_nll(
                model, tokenizer, [samples.prompts[samples.prompt_index[r]] for r in rows],
                [samples.continuations[r] for r in rows])
            weight = torch.tensor(weights[rows], dtype=torch.float32, device=nll.device)
            loss = (weight * nll).sum() / count.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        log(f"weighted SFT: epoch {epoch + 1}/{settings.epochs} weighted NLL "
            f"{total / len(samples):.4f}")
    model.eval()


def dpo(
    model: Any, tokenizer: Any, pairs: list[dict[str, str]], settings: FinetuneSettings,
    log: Callable[[str], None],
) -> None:
    """trl's DPO (sigmoid loss) on `pairs`, in place, a frozen copy as the reference."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    disable_progress_bar()
    if not pairs:
        raise Pv4fadError("no preference pair: every prompt's samples tie on lambda . r")
    on_cpu = model.device.type == "cpu"
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # transformers' own deprecation notices about its checkpointing flags, not ours.
        warnings.simplefilter("ignore", FutureWarning)
        config = DPOConfig(
            output_dir=scratch, per_device_train_batch_size=settings.batch_size,
            num_train_epochs=settings.epochs, learning_rate=settings.lr, beta=settings.beta,
            report_to=[], save_strategy="no", logging_strategy="epoch", disable_tqdm=True,
            seed=settings.seed, use_cpu=on_cpu, bf16=not on_cpu and model.dtype == torch.bfloat16,
            max_length=256,
        )
        trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model).eval(), args=config,
                             train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    for entry in trainer.state.log_history:
        if "loss" in entry:
            log(f"DPO: epoch {entry['epoch']:.0f} loss {entry['loss']:.4f} reward margin "
                f"{entry.get('rewards/margins', float('nan')):.3f}")
    model.eval()


def finetune_realisation(
    model: Any, tokenizer: Any, samples: SampleSet, lam: np.ndarray,
    values: tuple[str, ...], settings: FinetuneSettings, out: str | Path,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Fine-tune `model` toward p_lambda by `settings.method`; save it under `out`."""
    settings.check()
    torch.manual_seed(settings.seed)
    combined = samples.columns(values) @ lam
    if settings.method == "dpo":
        pairs = preference_pairs(samples, combined, settings.pairs_per_prompt)
        log(f"DPO on {len(pairs)} pairs ranked by lambda . r")
        dpo(model, tokenizer, pairs, settings, log)
    else:
        weighted_sft(model, tokenizer, samples, prompt_weights(samples, combined), settings,
                     log)
    return save_causal_lm(model, tokenizer, out)
