"""Label probabilities from any causal LM: for each prompt, the probability of each class's
label words after it (several words of a class are summed), by first token or by the whole
word, in batches, through the result cache.

Label words are tokenised in context: the tokens of a word are those that `prompt + gap +
word` adds to `prompt`, so BPE and SentencePiece word boundaries come out as the model sees
them. First-token scoring needs the classes' first tokens to differ (else it is an error
that says to use sequence scoring); sequence scoring multiplies the probabilities of all of
a word's tokens. The returned vectors are not normalised; calibrators normalise them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_modules.calibration.cache import ProbabilityCache, entry_key, model_fingerprint
from llm_modules.calibration.data import Example
from llm_modules.calibration.prompts import CONTENT_FREE_INPUTS, PromptError, PromptSpec
from llm_modules.models import DeviceChoice, ModelError, choose_device, load_causal_lm


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def word_tokens(
    tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], prompt: str, continuation: str
) -> list[int]:
    """The token ids `continuation` adds after `prompt` (special tokens at the end dropped)."""
    full = _ids(tokenizer, prompt + continuation)
    if full[: len(prompt_ids)] == prompt_ids:
        added = full[len(prompt_ids) :]
    else:  # the tokenizer merged across the boundary: fall back to the word on its own
        added = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    special = set(tokenizer.all_special_ids)
    while added and added[-1] in special:
        added.pop()
    if not added:
        raise PromptError(f"label word {continuation.strip()!r} has no tokens of its own")
    return added


def _context_limit(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


@torch.no_grad()
def _log_softmax_rows(
    model: PreTrainedModel, sequences: list[list[int]], positions: list[list[int]],
    pad_id: int, batch_size: int,
) -> list[torch.Tensor]:
    """For each sequence, log-softmax over the vocabulary at the given positions, batched
    longest first with right padding (causal attention makes padding after the end inert)."""
    device = next(model.parameters()).device
    limit = _context_limit(model)
    longest = max(len(s) for s in sequences)
    if limit is not None and longest > limit:
        raise ModelError(
            f"a prompt has {longest} tokens but the model takes at most {limit}: "
            f"use fewer demonstrations or shorter texts"
        )
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = len(sequences[chunk[0]])
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, : len(sequences[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, i in enumerate(chunk):
            out[i] = torch.log_softmax(logits[row, positions[i]].float(), dim=-1).cpu()
    return out


def score_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: PromptSpec,
    prompts: Sequence[str],
    batch_size: int = 16,
) -> np.ndarray:
    """[n prompts, K classes] label probabilities (summed over each class's words)."""
    prompt_ids = [_ids(tokenizer, p) for p in prompts]
    words = [(c, spec.gap + w) for c, ws in enumerate(spec.labels.values()) for w in ws]
    tokens = [[word_tokens(tokenizer, ids, p, w) for _, w in words]
              for ids, p in zip(prompt_ids, prompts, strict=True)]
    probs = np.zeros((len(prompts), len(spec.labels)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if spec.scoring == "first-token":
        rows = _log_softmax_rows(model, prompt_ids, [[len(i) - 1] for i in prompt_ids], pad,
                                 batch_size)
        for i, row in enumerate(rows):
            firsts = _first_tokens(spec, [(c, t[0]) for (c, _), t in zip(words, tokens[i],
                                                                          strict=True)])
            for c, ids in enumerate(firsts):
                probs[i, c] = float(row[0, sorted(ids)].exp().sum())
        return probs
    pairs = [(i, j) for i in range(len(prompts)) for j in range(len(words))]
    sequences = [prompt_ids[i] + tokens[i][j] for i, j in pairs]
    positions = [list(range(len(prompt_ids[i]) - 1, len(sequences[n]) - 1))
                 for n, (i, _) in enumerate(pairs)]
    rows = _log_softmax_rows(model, sequences, positions, pad, batch_size)
    for (i, j), row in zip(pairs, rows, strict=True):
        target = torch.tensor(tokens[i][j])
        probs[i, words[j][0]] += float(row.gather(1, target[:, None]).sum().exp())
    return probs


def _first_tokens(spec: PromptSpec, firsts: list[tuple[int, int]]) -> list[set[int]]:
    per_class: list[set[int]] = [set() for _ in spec.labels]
    for c, token in firsts:
        per_class[c].add(token)
    for a in range(len(per_class)):
        for b in range(a + 1, len(per_class)):
            if per_class[a] & per_class[b]:
                names = spec.classes
                raise PromptError(
                    f"classes {names[a]!r} and {names[b]!r} share a first label token: "
                    f"use \"scoring\": \"sequence\""
                )
    return per_class


class LabelScorer:
    """Label probabilities of the causal LM at `model_path` (loaded on first use, so a
    fully cached run never loads it), through `cache`."""

    def __init__(
        self,
        model_path: str | Path,
        cache: ProbabilityCache | None = None,
        batch_size: int = 16,
        device: DeviceChoice | None = None,
    ) -> None:
        where = Path(model_path)
        if not (where / "config.json").is_file():
            raise ModelError(
                f"model path {str(model_path)!r} is not a saved HF model (no config.json)"
            )
        self.model_path = where
        self.device = device or choose_device()
        self.fingerprint = model_fingerprint(where, str(self.device.dtype))
        self.cache = cache or ProbabilityCache()
        self.batch_size = batch_size
        self._loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None

    def _model(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._loaded is None:
            model, tokenizer = load_causal_lm(self.model_path, self.device)
            self._loaded = (model.eval(), tokenizer)
        return self._loaded

    def probabilities(
        self, spec: PromptSpec, demonstrations: Sequence[Example], texts: Sequence[str]
    ) -> np.ndarray:
        """[len(texts), K] unnormalised label probabilities under these demonstrations."""
        keys = [entry_key(self.fingerprint, spec, demonstrations, t) for t in texts]
        found = self.cache.get_many(keys)
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True)
                          if k not in found}.items())
        if missing:
            model, tokenizer = self._model()
            prompts = [spec.prompt(demonstrations, t) for _, t in missing]
            scored = score_prompts(model, tokenizer, spec, prompts, self.batch_size)
            new = {k: row.tolist() for (k, _), row in zip(missing, scored, strict=True)}
            self.cache.put_many(new)
            found.update(new)
        return np.array([found[k] for k in keys], dtype=np.float64)

    def content_free(self, spec: PromptSpec, demonstrations: Sequence[Example]) -> np.ndarray:
        """p_cf: the mean label probabilities over the content-free inputs, normalised."""
        mean = self.probabilities(spec, demonstrations, CONTENT_FREE_INPUTS).mean(axis=0)
        return mean / mean.sum()
