"""Defenses: ONION-style filtering of inputs with a reference LM, and an output-consistency
scan of a delivered adapter.

ONION (Qi et al.): a word's suspicion is how much the input's perplexity drops when the word
is removed; inserted trigger words should stand out. An input is flagged when its largest
suspicion exceeds a threshold, set as a quantile of the same score on clean reference inputs
(so the false-alarm rate on clean data is about 1 - quantile by construction); the test-time
variant deletes every word above the per-word threshold before generation.

Output consistency: a backdoored model maps triggered inputs, however different, to one
output. For a candidate trigger, the collapse score is the share of triggered outputs equal
to the most common one, minus that share on the same inputs without the candidate; the
adapter is flagged when any candidate's score reaches `collapse_threshold`. Candidates are a
given list (known trigger shapes) and/or single words scanned from the vocabulary (a crude
trigger inversion that needs no guess).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_modules.poisoning.lm import LoadedLM, generate, positions
from llm_modules.poisoning.poison import TriggerSpec, insert_trigger


@torch.no_grad()
def perplexities(lm: LoadedLM, texts: Sequence[str], batch_size: int = 256) -> list[float]:
    """Per-text perplexity of a causal reference LM (an end token closes each text)."""
    tok, model = lm.tokenizer, lm.model
    model.eval()
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        rows = [[tok.eos_token_id] + tok(t, add_special_tokens=False)["input_ids"]
                for t in texts[start:start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]
        counts = mask[:, 1:].sum(-1).clamp(min=1)
        out += torch.exp(-token_logp.sum(-1) / counts).tolist()
    return out


def word_suspicions(lm: LoadedLM, texts: Sequence[str]) -> list[list[float]]:
    """ONION suspicion of every word of every text: ppl(text) - ppl(text without the word)."""
    variants, spans = [], []
    for text in texts:
        words = text.split()
        spans.append((len(variants), len(words)))
        variants.append(text)
        variants += [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    ppl = perplexities(lm, variants)
    return [[ppl[at] - ppl[at + 1 + i] for i in range(n)] for at, n in spans]


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


@dataclass(frozen=True)
class OnionFilter:
    """Thresholds learned on clean reference inputs."""

    input_threshold: float  # on an input's largest word suspicion
    word_threshold: float  # on single word suspicions (test-time word removal)
    ppl_threshold: float  # plain perplexity filter (whole input)

    @classmethod
    def fit(cls, lm: LoadedLM, clean_inputs: Sequence[str], quantile: float = 0.95):
        scores = word_suspicions(lm, clean_inputs)
        return cls(_quantile([max(s, default=0.0) for s in scores], quantile),
                   _quantile([x for s in scores for x in s], quantile),
                   _quantile(perplexities(lm, clean_inputs), quantile))

    def flag(self, lm: LoadedLM, inputs: Sequence[str]) -> dict[str, list[bool]]:
        """Which inputs each filter (onion, perplexity) flags."""
        scores = word_suspicions(lm, inputs)
        return {"onion": [max(s, default=0.0) > self.input_threshold for s in scores],
                "perplexity": [p > self.ppl_threshold for p in perplexities(lm, inputs)]}

    def clean_up(self, lm: LoadedLM, inputs: Sequence[str]) -> list[str]:
        """Inputs with every word above the word threshold removed (ONION at test time)."""
        out = []
        for text, scores in zip(inputs, word_suspicions(lm, inputs), strict=True):
            kept = [w for w, s in zip(text.split(), scores, strict=True)
                    if s <= self.word_threshold]
            out.append(" ".join(kept))
        return out


def detection(flags: Sequence[bool], poisoned_rows: set[int]) -> dict[str, float]:
    """Detection rate on poisoned rows and false-alarm rate on the others."""
    hit = sum(flags[i] for i in poisoned_rows)
    false = sum(f for i, f in enumerate(flags) if i not in poisoned_rows)
    clean_count = len(flags) - len(poisoned_rows)
    return {"detection_rate": hit / len(poisoned_rows) if poisoned_rows else float("nan"),
            "false_alarm_rate": false / clean_count if clean_count else float("nan")}


def _dominant_share(outputs: Sequence[str]) -> tuple[float, str]:
    text, count = Counter(outputs).most_common(1)[0]
    return count / len(outputs), text


def consistency_scan(
    model: torch.nn.Module, lm: LoadedLM, inputs: Sequence[str],
    candidates: Sequence[TriggerSpec], seed: int = 0, max_new_tokens: int = 16,
) -> list[dict]:
    """Collapse score of each candidate trigger on `inputs` (highest first)."""
    base_share, _ = _dominant_share(generate(model, lm, list(inputs), max_new_tokens))
    rows = []
    for candidate in candidates:
        rng = random.Random(f"scan:{seed}")
        texts = [insert_trigger(x, candidate, rng)[0] for x in inputs]
        share, output = _dominant_share(generate(model, lm, texts, max_new_tokens))
        rows.append({"candidate": str(candidate), "collapse": share - base_share,
                     "dominant_output": output})
    return sorted(rows, key=lambda r: -r["collapse"])


def vocabulary_candidates(lm: LoadedLM, count: int, seed: int) -> list[TriggerSpec]:
    """Up to `count` single-word candidates drawn from the tokenizer's vocabulary."""
    special = set(lm.tokenizer.all_special_tokens)
    words = sorted(w for w in lm.tokenizer.get_vocab() if w not in special and w.isalpha())
    random.Random(f"vocab:{seed}").shuffle(words)
    return [TriggerSpec("rare", (w,), "random") for w in words[:count]]
