"""A whole post-training job on any saved causal LM: load, score the reference, optionally
wrap in LoRA, train, merge, digest and save. Used by the CLI and by the federated data
owner, so both run exactly the same code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel
from trl.trainer.utils import disable_dropout_in_model

from federation.errors import DataError, Pv4fadError
from llm_modules.alignment.post_training import PostTrainConfig, model_digest, post_train
from llm_modules.alignment.post_training_data import (
    PreferencePair,
    SFTExample,
    load_preferences,
    load_sft,
)
from llm_modules.alignment.post_training_losses import evaluate, objective_data
from llm_modules.models import ModelError, load_causal_lm, save_causal_lm


@dataclass(frozen=True)
class PostTrainingData:
    """What a data owner holds: training sets of both objectives, optional held-out sets."""

    sft: list[SFTExample]
    preferences: list[PreferencePair]
    sft_eval: list[SFTExample] = field(default_factory=list)
    preference_eval: list[PreferencePair] = field(default_factory=list)

    @classmethod
    def from_files(
        cls,
        sft: str,
        preference: str,
        sft_eval: str | None = None,
        preference_eval: str | None = None,
    ) -> PostTrainingData:
        if (sft_eval is None) != (preference_eval is None):
            raise DataError("held-out evaluation needs both an SFT and a preference file "
                            "(--sft-eval and --preference-eval), or neither")
        return cls(
            load_sft(sft, "SFT"), load_preferences(preference, "preference"),
            load_sft(sft_eval, "held-out SFT") if sft_eval else [],
            load_preferences(preference_eval, "held-out preference") if preference_eval else [],
        )


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters on every linear layer (peft's "all-linear"); merged after training."""

    rank: int = 8
    alpha: float = 16.0


def max_positions(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def run_post_training(
    model_path: str | Path,
    data: PostTrainingData,
    config: PostTrainConfig,
    *,
    reference_path: str | Path | None = None,
    lora: LoraSettings | None = None,
    out_dir: str | Path | None = None,
    on_eval: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Post-train the model at `model_path`; pi_ref is the model at `reference_path`, or the
    starting model. Returns final losses (training sets, and held-out sets if given),
    gradient evaluations per objective, training seconds and the SHA-256 model digest."""
    config.check()
    if lora is not None and (lora.rank < 1 or lora.alpha <= 0):
        raise Pv4fadError(f"LoRA rank must be >= 1 and alpha > 0, got {lora.rank}, {lora.alpha}")
    model, tokenizer = load_causal_lm(model_path)
    disable_dropout_in_model(model)  # as trl's DPO: dropout would make log-ratios noisy
    reference = model
    if reference_path is not None:
        reference, ref_tokenizer = load_causal_lm(reference_path)
        if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ModelError(f"reference model {str(reference_path)!r} has a different "
                             f"tokenizer from {str(model_path)!r}")
    limit = max_positions(model)
    train = objective_data(tokenizer, reference, data.sft, data.preferences, limit)
    held_out = None
    if data.sft_eval:
        held_out = objective_data(tokenizer, reference, data.sft_eval, data.preference_eval, limit)
    del reference  # its log-probs are stored; the model itself is no longer needed
    if lora is not None:
        model = _with_lora(model, lora)
    result = post_train(model, train, config, held_out, on_eval)
    if lora is not None:
        model = model.merge_and_unload()
    train_sft, train_dpo = evaluate(model, train, config.beta)
    summary = {
        "method": config.method, "lambda": config.lam, "steps": config.steps,
        "train": {"f_sft": train_sft, "f_dpo": train_dpo},
        "held_out": None if held_out is None else dict(zip(("f_sft", "f_dpo"), result.final,
                                                           strict=True)),
        "updates": result.updates, "seconds": result.seconds, "digest": model_digest(model),
        "lora_rank": lora.rank if lora else 0, "out": None,
    }
    if out_dir is not None:
        summary["out"] = str(save_causal_lm(model, tokenizer, out_dir))
    return summary


def _with_lora(model: PreTrainedModel, lora: LoraSettings) -> PreTrainedModel:
    from peft import LoraConfig, get_peft_model

    adapters = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=0.0,
                          target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, adapters)
