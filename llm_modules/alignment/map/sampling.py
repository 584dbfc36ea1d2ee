"""Reference samples: n continuations per prompt from a causal LM, scored on every value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from federation.errors import DataError, Pv4fadError
from llm_modules.alignment.map.corpus import builtin_prompts
from llm_modules.alignment.map.rewards import (
    ScoringContext,
    ValueScorer,
    build_scorers,
    score_all,
)
from llm_modules.alignment.map.samples import write_samples
from llm_modules.alignment.map.tiny_lm import BUILTIN_MODEL, build_tiny_lm


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings, recorded in the samples header. `top_k` 0 and `top_p` 1 sample
    from the model's full distribution, which MAP's importance weights assume."""

    n_per_prompt: int = 16
    max_new_tokens: int = 24
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 512  # sequences per generate() call
    seed: int = 0

    def check(self) -> None:
        if self.n_per_prompt < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise Pv4fadError("--n, --max-new-tokens and --batch-size must be at least 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise Pv4fadError("need --temperature > 0, 0 < --top-p <= 1 and --top-k >= 0")


def resolve_model(model: str, log: Callable[[str], None] = lambda _m: None) -> Path:
    """A model directory; `builtin` trains (once) and caches the built-in tiny LM."""
    return build_tiny_lm(log=log) if model == BUILTIN_MODEL else Path(model)


def load_prompts(source: str, count: int, seed: int) -> list[str]:
    """Prompts from a text file (one per line) or `builtin` (built-in corpus openings)."""
    if source == "builtin":
        return builtin_prompts(count, seed)
    where = Path(source)
    if not where.is_file():
        raise DataError(f"prompts file {source!r} does not exist")
    prompts = [line.strip() for line in where.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise DataError(f"prompts file {source!r} has no non-empty line")
    return prompts


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    settings: GenerationSettings,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[int], list[str]]:
    """`settings.n_per_prompt` sampled continuations of every prompt, as (prompt index,
    continuation text) rows grouped by prompt. Seeded once, so a run repeats exactly."""
    torch.manual_seed(settings.seed)
    tokenizer.padding_side = "left"
    per_call = max(1, settings.batch_size // settings.n_per_prompt)
    indices, texts = [], []
    model.eval()
    for start in range(0, len(prompts), per_call):
        chunk = list(prompts[start : start + per_call])
        encoded = tokenizer(chunk, padding=True, return_tensors="pt").to(model.device)
        output = model.generate(
            **encoded, do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
            top_k=settings.top_k, max_new_tokens=settings.max_new_tokens,
            num_return_sequences=settings.n_per_prompt, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = output[:, encoded.input_ids.shape[1]:]
        texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        indices += [start + i for i in range(len(chunk)) for _ in range(settings.n_per_prompt)]
        log(f"generated {len(texts)}/{len(prompts) * settings.n_per_prompt} continuations")
    return indices, texts


def sample_reference(
    model_dir: Path,
    prompts: Sequence[str],
    scorers: Sequence[ValueScorer],
    context: ScoringContext,
    settings: GenerationSettings,
    out: str | Path,
    header: dict | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[Path, np.ndarray]:
    """Generate, score and write a samples file; returns (its path, the reward matrix)."""
    model, tokenizer = context.reference_model()
    indices, texts = generate(model, tokenizer, prompts, settings, log)
    rewards = score_all(scorers, [prompts[i] for i in indices], texts, log=log)
    meta = {"model": str(model_dir), "generation": asdict(settings), "seed": settings.seed,
            "values": [s.spec() for s in scorers], **(header or {})}
    path = write_samples(out, meta, prompts, indices, texts, [s.name for s in scorers], rewards)
    return path, rewards


def scorers_from_header(
    header: dict, names: Sequence[str], context: ScoringContext
) -> list[ValueScorer]:
    """Scorers for `names` rebuilt from a samples header, so that fresh generations are
    scored exactly as the reference samples were."""
    from llm_modules.alignment.map.model_rewards import RewardModelSpec

    specs = {v["name"]: v for v in header["values"] if isinstance(v, dict)}
    builtin, models = [], []
    for name in names:
        spec = specs.get(name, {"kind": "builtin"})
        if spec.get("kind") == "reward-model":
            models.append(RewardModelSpec(name, spec["path"], spec["read"], spec["format"]))
        else:
            builtin.append(name)
    by_name = {s.name: s for s in build_scorers(builtin, context, models)}
    return [by_name[name] for name in names]
