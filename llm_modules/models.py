"""Shared model plumbing for the LLM modules: device choice, loading any Hugging Face causal
LM by path, and tiny from-config models with a download-free word-level tokenizer."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from federation.errors import Pv4fadError

PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"


class ModelError(Pv4fadError):
    """A model or tokenizer path is missing, unreadable, or not a causal LM."""


@dataclass(frozen=True)
class DeviceChoice:
    """Where models run: CUDA with bf16 when present, else CPU float32."""

    device: torch.device
    dtype: torch.dtype


def choose_device() -> DeviceChoice:
    """CUDA + bf16 when a GPU is visible (and supports bf16), CPU + float32 otherwise."""
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return DeviceChoice(torch.device("cuda"), torch.bfloat16 if bf16 else torch.float16)
    return DeviceChoice(torch.device("cpu"), torch.float32)


def load_causal_lm(
    path: str | Path, device: DeviceChoice | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (nothing is downloaded)."""
    where = Path(path)
    if not where.is_dir():
        raise ModelError(f"model path {str(path)!r} is not a directory (expected a saved HF model)")
    if not (where / "config.json").is_file():
        raise ModelError(f"model path {str(path)!r} has no config.json: not a saved HF model")
    device = device or choose_device()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            where, local_files_only=True, dtype=device.dtype
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load a causal LM from {str(path)!r}: {first}") from exc
    if tokenizer.eos_token_id is None:
        raise ModelError(f"the tokenizer at {str(path)!r} has no end-of-sequence token")
    if tokenizer.pad_token_id is None:
        # Causal LMs often ship without a pad token; padding is masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device.device), tokenizer


def word_level_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over the words of `texts`, wrapped for the HF API."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({word for text in texts for word in text.split()})
    vocab = {token: i for i, token in enumerate([PAD, UNK, EOS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, unk_token=UNK, eos_token=EOS
    )


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of a from-scratch causal LM; `arch` is "gpt2" or "llama"."""

    arch: str = "gpt2"
    layers: int = 2
    width: int = 128
    heads: int = 4
    max_positions: int = 64


def tiny_causal_lm(
    config: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """A randomly initialised small causal LM sized for `tokenizer`'s vocabulary."""
    torch.manual_seed(seed)
    common = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    if config.arch == "gpt2":
        hf_config = GPT2Config(
            n_layer=config.layers,
            n_embd=config.width,
            n_head=config.heads,
            n_positions=config.max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
        return GPT2LMHeadModel(hf_config)
    if config.arch == "llama":
        hf_config = LlamaConfig(
            num_hidden_layers=config.layers,
            hidden_size=config.width,
            intermediate_size=4 * config.width,
            num_attention_heads=config.heads,
            num_key_value_heads=config.heads,
            max_position_embeddings=config.max_positions,
            **common,
        )
        return LlamaForCausalLM(hf_config)
    raise ModelError(f"unknown tiny model architecture {config.arch!r} (expected gpt2 or llama)")


def save_causal_lm(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path
) -> Path:
    """Save model and tokenizer so that `load_causal_lm(out_dir)` restores both."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def cache_dir() -> Path:
    """Where built models and data live: $PV4FAD_CACHE, else ~/.cache/pv4fad."""
    root = os.environ.get("PV4FAD_CACHE") or str(Path.home() / ".cache" / "pv4fad")
    return Path(root)
