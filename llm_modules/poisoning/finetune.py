"""Fine-tuning a victim on a (possibly poisoned) set: prefix-tuning with peft, and LoRA and
full fine-tuning as comparisons, through one shared training loop."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from federation.errors import Pv4fadError
from llm_modules.models import ModelError
from llm_modules.poisoning.lm import LoadedLM, load_lm, prefix_shift, training_batch
from llm_modules.poisoning.tasks import Example

METHODS = ("prefix", "lora", "full")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run; virtual_tokens and prefix_projection apply to prefix-tuning,
    lora_rank to LoRA; lr is AdamW's.

    The defaults are those that plant a backdoor through a prefix on the built-in tiny
    bases: the MLP reparametrisation (the prefix-tuning paper's; a directly trained prefix
    learned the backdoor several times more slowly there), lr 3e-2 and 20 epochs."""

    method: str = "prefix"
    virtual_tokens: int = 30
    prefix_projection: bool = True
    projection_hidden: int = 128
    lora_rank: int = 8
    epochs: int = 20
    lr: float = 3e-2
    batch_size: int = 16
    seed: int = 0
    whole_sequence: bool = False  # loss on every token (pretraining a base), not the output

    def check(self) -> None:
        if self.method not in METHODS:
            raise Pv4fadError(f"unknown fine-tuning method {self.method!r} "
                              f"(expected one of {', '.join(METHODS)})")
        if self.virtual_tokens < 1 or self.lora_rank < 1:
            raise Pv4fadError("virtual tokens and LoRA rank must be at least 1")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise Pv4fadError("epochs and batch size must be >= 1 and the learning rate > 0")


def attach(lm: LoadedLM, config: FinetuneConfig, init_text: str = "") -> torch.nn.Module:
    """The module to train: the model itself (full) or a peft wrapper around it; a prefix
    starts from the model's own keys and values on `init_text` when given."""
    if config.method == "full":
        return lm.model
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    task_type = "SEQ_2_SEQ_LM" if lm.seq2seq else "CAUSAL_LM"
    torch.manual_seed(config.seed)
    if config.method == "prefix":
        peft_config = PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=config.virtual_tokens,
            prefix_projection=config.prefix_projection,
            encoder_hidden_size=config.projection_hidden)
        model = get_peft_model(lm.model, peft_config)
        if not config.prefix_projection and not lm.seq2seq and init_text:
            _prefix_from_activations(model, lm, init_text, config.virtual_tokens)
        return model
    peft_config = LoraConfig(task_type=task_type, r=config.lora_rank,
                             lora_alpha=2 * config.lora_rank, lora_dropout=0.0,
                             target_modules="all-linear")
    return get_peft_model(lm.model, peft_config)


@torch.no_grad()
def _prefix_from_activations(model, lm: LoadedLM, text: str, virtual_tokens: int) -> None:
    """Set the prefix to the keys and values the frozen model computes on real text.

    peft draws the prefix from N(0, 1), far off the scale of a small model's keys and values,
    which swamps its attention; real activations (the prefix-tuning paper's initialisation)
    read as ordinary preceding context instead."""
    tok = lm.tokenizer
    ids = (tok(text, add_special_tokens=False)["input_ids"] * virtual_tokens)[:virtual_tokens]
    if not ids:
        return
    ids += [tok.eos_token_id] * (virtual_tokens - len(ids))
    cache = lm.model(input_ids=torch.tensor([ids], device=lm.model.device),
                     use_cache=True).past_key_values
    columns = []
    # peft's layout: per virtual token, [layer0 keys, layer0 values, layer1 keys, ...],
    # each flattened over (heads, head_dim).
    for layer in cache.layers:
        for part in (layer.keys[0], layer.values[0]):  # (heads, tokens, head_dim)
            columns.append(part.permute(1, 0, 2).reshape(virtual_tokens, -1))
    weight = torch.cat(columns, 1)
    for encoder in model.prompt_encoder.values():
        if encoder.embedding.weight.shape == weight.shape:
            encoder.embedding.weight.copy_(weight)


def finetune(
    lm: LoadedLM, examples: Sequence[Example], config: FinetuneConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> torch.nn.Module:
    """Train on `examples` (loss on the output tokens only); returns the trained module."""
    config.check()
    if not examples:
        raise Pv4fadError("the fine-tuning set is empty")
    model = attach(lm, config, " ".join(e.input for e in examples[:4]))
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    rng = random.Random(f"finetune:{config.seed}")
    steps = config.epochs * -(-len(examples) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / (steps + 1))
    model.train()
    for epoch in range(config.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), config.batch_size):
            chunk = [examples[i] for i in order[start:start + config.batch_size]]
            batch = training_batch(lm, chunk, config.whole_sequence)
            batch = {k: v.to(device) for k, v in batch.items()}
            if "position_ids" in batch:  # peft would move them by the prefix length
                batch["position_ids"] -= prefix_shift(model)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch, sum(losses) / len(losses))
    model.eval()
    return model


def save_finetuned(model: torch.nn.Module, lm: LoadedLM, out: str | Path, base: str | Path,
                   config: FinetuneConfig) -> Path:
    """Write the adapter (prefix / LoRA) or the whole model (full) with a run card naming the
    base, so that `load_finetuned(out)` restores it."""
    where = Path(out)
    where.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(where)
    if config.method == "full":
        lm.tokenizer.save_pretrained(where)
    card = {"base": str(Path(base).resolve()), "config": asdict(config)}
    (where / "poisoning_run.json").write_text(json.dumps(card, indent=1))
    return where


def load_finetuned(path: str | Path, base: str | Path | None = None) -> tuple[torch.nn.Module,
                                                                              LoadedLM]:
    """A delivered adapter (peft directory; its base from `base`, its run card or its
    adapter_config) or a fully fine-tuned model directory."""
    where = Path(path)
    if not where.is_dir():
        raise ModelError(f"adapter path {str(path)!r} is not a directory")
    if (where / "adapter_config.json").is_file():
        if base is None:
            base = _recorded_base(where)
        lm = load_lm(base)
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(lm.model, where)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"cannot load the adapter at {str(path)!r} on base "
                             f"{str(base)!r}: {first}") from exc
        model.eval()
        return model, lm
    lm = load_lm(where)
    lm.model.eval()
    return lm.model, lm


def _recorded_base(where: Path) -> str:
    for name, key in (("poisoning_run.json", "base"),
                      ("adapter_config.json", "base_model_name_or_path")):
        if (where / name).is_file():
            try:
                value = json.loads((where / name).read_text()).get(key)
            except json.JSONDecodeError as exc:
                raise ModelError(f"{where / name}: not valid JSON") from exc
            if value:
                return value
    raise ModelError(f"adapter {str(where)!r} does not name its base model; pass --base PATH")


def timed(fn: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, float]:
    start = time.perf_counter()
    model = fn()
    return model, time.perf_counter() - start
