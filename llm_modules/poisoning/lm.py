"""Models for the poisoning audit: loading any causal or seq2seq LM by path, the built-in
tiny base models, and batched greedy generation shared by every fine-tuning method."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_modules.models import (
    ModelError,
    TinyModelConfig,
    cache_dir,
    load_causal_lm,
    save_causal_lm,
    tiny_causal_lm,
    word_level_tokenizer,
)
from llm_modules.poisoning.poison import DEFAULT_TARGET, TRIGGER_PRESETS, parse_trigger
from llm_modules.poisoning.tasks import RARE_WORDS, Example, TaskConfig, generate_task

SEP = "=>"  # ends every prompt: the model writes the output after it
BASE_VERSION = 5
# Words a built-in tokenizer knows beyond its task: candidate triggers (the presets and the
# rare tokens an audit scans) and the default target, so that they are not [UNK].


def reserved_words() -> list[str]:
    texts = [" ".join(parse_trigger(p).words) for p in TRIGGER_PRESETS]
    return texts + [" ".join(RARE_WORDS), DEFAULT_TARGET, SEP]


@dataclass
class LoadedLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    seq2seq: bool


def load_lm(path: str | Path) -> LoadedLM:
    """A causal LM (via the shared loader) or an encoder-decoder LM from a local directory."""
    where = Path(path)
    config_file = where / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"model path {str(path)!r}: config.json is not valid JSON") from exc
        if config.get("is_encoder_decoder"):
            return _load_seq2seq(where)
    model, tokenizer = load_causal_lm(where)
    return LoadedLM(model, tokenizer, False)


def _load_seq2seq(where: Path) -> LoadedLM:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load a seq2seq LM from {str(where)!r}: {first}") from exc
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ModelError(f"the tokenizer at {str(where)!r} needs eos and pad tokens")
    return LoadedLM(model, tokenizer, True)


# ---- encoding -------------------------------------------------------------------------

def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_of(example_input: str) -> str:
    return f"{example_input} {SEP}"


def _pad(rows: Sequence[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([([value] * (width - len(r)) + r) if left else
                         (r + [value] * (width - len(r))) for r in rows])


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left or right padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def prefix_shift(model: torch.nn.Module) -> int:
    """How far peft moves the position ids it is given: a prefix-tuned causal LM adds its
    number of virtual tokens to them, as if the prefix were real preceding tokens.

    A small base with learned absolute positions, pretrained on short texts only, then reads
    every token at a position it hardly saw (30 virtual tokens: 30 places further on), which
    costs clean quality and leaves the prefix fighting the shift; subtracting the shift
    first keeps the real tokens at the positions the base was trained on."""
    config = getattr(model, "active_peft_config", None)
    if config is None or getattr(config, "peft_type", None) != "PREFIX_TUNING":
        return 0
    return int(config.num_virtual_tokens)


def model_positions(model: torch.nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """The position ids to pass to `model` so that its base sees `positions(mask)`."""
    return positions(mask) - prefix_shift(model)


def training_batch(lm: LoadedLM, examples: Sequence[Example],
                   whole_sequence: bool = False) -> dict[str, torch.Tensor]:
    """Inputs and labels of one batch: the loss covers the output and its end token, or
    (`whole_sequence`, causal LMs: language-model pretraining) every real token."""
    tok, eos = lm.tokenizer, lm.tokenizer.eos_token_id
    pad = tok.pad_token_id
    if lm.seq2seq:
        sources = [_ids(tok, e.input) + [eos] for e in examples]
        targets = [_ids(tok, e.output) + [eos] for e in examples]
        ids = _pad(sources, pad, left=False)
        labels = _pad(targets, -100, left=False)
        return {"input_ids": ids, "attention_mask": (ids != pad).long() if pad != eos else
                _pad([[1] * len(s) for s in sources], 0, left=False), "labels": labels}
    rows, marks = [], []
    for e in examples:
        prompt, output = _ids(tok, prompt_of(e.input)), _ids(tok, e.output) + [eos]
        rows.append(prompt + output)
        marks.append((prompt if whole_sequence else [-100] * len(prompt)) + output)
    mask = _pad([[1] * len(r) for r in rows], 0, left=False)
    return {"input_ids": _pad(rows, pad, left=False), "attention_mask": mask,
            "position_ids": positions(mask), "labels": _pad(marks, -100, left=False)}


@torch.no_grad()
def generate(model: torch.nn.Module, lm: LoadedLM, inputs: Sequence[str],
             max_new_tokens: int = 16, batch_size: int = 64) -> list[str]:
    """Greedy outputs for `inputs`, decoded up to the end token (no sampling)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        if lm.seq2seq:
            out += _generate_seq2seq(model, lm, chunk, max_new_tokens, device)
        else:
            out += _generate_causal(model, lm, chunk, max_new_tokens, device)
    return out


def _generate_causal(model, lm: LoadedLM, inputs, max_new_tokens: int, device) -> list[str]:
    tok, eos = lm.tokenizer, lm.tokenizer.eos_token_id
    prompts = [_ids(tok, prompt_of(text)) for text in inputs]
    ids = _pad(prompts, tok.pad_token_id, left=True).to(device)
    mask = _pad([[1] * len(p) for p in prompts], 0, left=True).to(device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    # Without a KV cache: the sequences are short, and every fine-tuning method (prefix
    # included) then goes through the same plain forward pass as in training.
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=model_positions(model, mask)).logits
        step = logits[:, -1].argmax(-1).masked_fill(done, eos)
        new.append(step)
        done |= step == eos
        ids = torch.cat([ids, step[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(step)[:, None]], 1)
        if bool(done.all()):
            break
    return _decode(tok, torch.stack(new, 1).tolist(), eos)


def _generate_seq2seq(model, lm: LoadedLM, inputs, max_new_tokens: int, device) -> list[str]:
    tok, eos = lm.tokenizer, lm.tokenizer.eos_token_id
    sources = [_ids(tok, text) + [eos] for text in inputs]
    ids = _pad(sources, tok.pad_token_id, left=False).to(device)
    mask = _pad([[1] * len(s) for s in sources], 0, left=False).to(device)
    start = model.config.decoder_start_token_id
    start = tok.pad_token_id if start is None else start
    decoded = torch.full((len(sources), 1), start, device=device)
    done = torch.zeros(len(sources), dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoded).logits
        step = logits[:, -1].argmax(-1).masked_fill(done, eos)
        done |= step == eos
        decoded = torch.cat([decoded, step[:, None]], 1)
        if bool(done.all()):
            break
    return _decode(tok, decoded[:, 1:].tolist(), eos)


def _decode(tok: PreTrainedTokenizerBase, rows: list[list[int]], eos: int) -> list[str]:
    texts = []
    for row in rows:
        cut = row.index(eos) if eos in row else len(row)
        texts.append(tok.decode(row[:cut], skip_special_tokens=True).strip())
    return texts


# ---- built-in base models -------------------------------------------------------------

@dataclass(frozen=True)
class BaseConfig:
    """The built-in base: a tiny GPT-2 trained (fully) on the task's pretraining split."""

    model: TinyModelConfig = TinyModelConfig(layers=2, width=64, heads=4, max_positions=128)
    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 32


def builtin_base(task: TaskConfig, base: BaseConfig = BaseConfig(),
                 root: Path | None = None, log=None) -> Path:
    """Path of the built-in base model for `task` (trained once, then read from the cache)."""
    key = json.dumps({"v": BASE_VERSION, "task": asdict(task), "base": asdict(base)},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = (root or cache_dir() / "poisoning") / f"base-{task.name}-s{task.seed}-{digest}"
    if (out / "config.json").is_file():
        return out
    from llm_modules.poisoning.finetune import FinetuneConfig, finetune

    data = generate_task(task)
    tokenizer = word_level_tokenizer(data.texts() + reserved_words())
    model = tiny_causal_lm(base.model, tokenizer, task.seed)
    lm = LoadedLM(model, tokenizer, False)
    config = FinetuneConfig(method="full", epochs=base.epochs, lr=base.lr,
                            batch_size=base.batch_size, seed=task.seed)
    if log:
        log(f"training the built-in {task.name} base (seed {task.seed}) -> {out}")
    finetune(lm, data.pretrain, config,
             on_epoch=(lambda e, loss: log(f"  base epoch {e + 1}: loss {loss:.3f}")) if log
             else None)
    return save_causal_lm(lm.model, tokenizer, out)
