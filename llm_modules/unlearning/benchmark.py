"""The built-in TOFU-style benchmark: generated facts, a target model that memorised them and
a retain-only model trained without the forget set, cached under the data directory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_modules.models import (
    TinyModelConfig,
    cache_dir,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)
from llm_modules.unlearning.assess import measure
from llm_modules.unlearning.data import Fact, encode_facts, load_facts, save_facts
from llm_modules.unlearning.facts import (
    GENERATOR_VERSION,
    entity_facts,
    paraphrased_facts,
    related_facts,
    world_facts,
)
from llm_modules.unlearning.scoring import mean_answer_nll

SPLITS = ("forget", "retain", "holdout", "world")
# Also written, loaded on request: a second forget set for choosing hyper-parameters (in the
# target's training data, not the retain-only model's), and the assessment's never-trained
# generalisation probes of the forget set.
EXTRA_SPLITS = ("validation", "forget_paraphrased", "forget_related")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Size of the generated benchmark and of the from-scratch training."""

    n_entities: int = 40
    n_forget: int = 4  # entities (4 facts each); TOFU's forget10 is 10 %
    n_holdout: int = 4
    n_validation: int = 0  # entities of the validation forget set (0: none)
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    train_epochs: int = 150
    train_lr: float = 3e-3
    train_batch: int = 16
    stop_nll: float = 0.02  # stop once the mean answer NLL on the training facts is below
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps([GENERATOR_VERSION, asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class BenchmarkPaths:
    root: Path

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def retain_model(self) -> Path:
        return self.root / "retain_model"

    def split(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

    def load_splits(self, extra: bool = False) -> dict[str, list[Fact]]:
        """The forget / retain / holdout / world splits; with `extra`, also those of
        EXTRA_SPLITS that this benchmark has (no validation split when n_validation is 0)."""
        names = SPLITS + (EXTRA_SPLITS if extra else ())
        return {name: load_facts(self.split(name), role=name)
                for name in names if self.split(name).is_file()}

    def training(self) -> dict:
        """How each model was trained (epochs, final NLL, seconds) from meta.json."""
        return json.loads((self.root / "meta.json").read_text())["training"]


def generate_splits(config: BenchmarkConfig) -> dict[str, list[Fact]]:
    """forget / holdout / validation / retain entities (disjoint), the shared world facts
    and the forget set's paraphrased and related probes."""
    entities = entity_facts(config.n_entities, config.seed)
    cut = config.n_forget + config.n_holdout
    val_end = cut + config.n_validation
    if val_end >= config.n_entities:
        raise ValueError(f"{config.n_entities} entities leave no retain set after "
                         f"{config.n_forget} forget, {config.n_holdout} holdout and "
                         f"{config.n_validation} validation entities")
    forget = [f for e in entities[: config.n_forget] for f in e]
    splits = {
        "forget": forget,
        "holdout": [f for e in entities[config.n_forget : cut] for f in e],
        "retain": [f for e in entities[val_end:] for f in e],
        "world": world_facts(config.seed),
        "forget_paraphrased": paraphrased_facts(forget),
        "forget_related": related_facts(forget),
    }
    if config.n_validation:
        splits["validation"] = [f for e in entities[cut:val_end] for f in e]
    return splits


def train_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    config: BenchmarkConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[int, float]:
    """Train in place on question-answer pairs (loss on answers) until they are memorised;
    returns (epochs run, final mean answer NLL)."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.train_lr,
        total_steps=config.train_epochs * -(-len(facts) // config.train_batch),
    )
    model.train()
    epoch, mean = 0, float("inf")
    for epoch in range(config.train_epochs):
        order = torch.randperm(len(facts), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), config.train_batch):
            chunk = [facts[i] for i in order[start : start + config.train_batch]]
            batch = encode_facts(tokenizer, chunk)
            loss = mean_answer_nll(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch.input_ids)
        mean = total / len(facts)
        if on_epoch is not None:
            on_epoch(epoch, mean)
        if mean < config.stop_nll:
            break
    model.eval()
    return epoch + 1, mean


def build_benchmark(
    config: BenchmarkConfig,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchmarkPaths:
    """Generate the splits and train both models, or reuse them from the cache."""
    paths = BenchmarkPaths((root or cache_dir() / "unlearning-bench") / config.key())
    if (paths.root / "meta.json").is_file():
        return paths
    splits = generate_splits(config)
    texts = [
        text
        for facts in splits.values()
        for f in facts
        for text in (f.question, f.answer, f.paraphrased_answer, *f.perturbed_answers)
    ]
    tokenizer = word_level_tokenizer(texts)
    for name, facts in splits.items():
        save_facts(facts, paths.split(name))
    training = {}
    validation = splits.get("validation", [])
    for which, facts in (
        ("target", splits["forget"] + validation + splits["retain"] + splits["world"]),
        ("retain_model", splits["retain"] + splits["world"]),
    ):
        model = tiny_causal_lm(config.model, tokenizer, seed=config.seed)

        def report(epoch: int, loss: float, which: str = which) -> None:
            if log is not None and (epoch % 25 == 0):
                log(f"training {which}: epoch {epoch} answer NLL {loss:.3f}")

        (epochs, nll), cost = measure(
            lambda: train_lm(model, tokenizer, facts, config, on_epoch=report),  # noqa: B023
            next(model.parameters()).device,
        )
        # the retain-only model's cost is the assessment's "retraining" baseline
        training[which] = {"epochs": epochs, "final_answer_nll": nll, "facts": len(facts),
                           "steps": epochs * -(-len(facts) // config.train_batch), **cost}
        if log is not None:
            log(f"trained {which}: {epochs} epochs, answer NLL {nll:.4f}")
        save_causal_lm(model, tokenizer, paths.root / which)
    meta = {"config": asdict(config), "training": training}
    (paths.root / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return paths
