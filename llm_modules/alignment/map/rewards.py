"""Value scorers: one interface, (prompt, continuation) -> float, and a registry of them.

Built-in values need no download. `positiveness`, `harmlessness` and `politeness` are tiny
bag-of-words logistic regressions trained here (in well under a second) on remarks of the
built-in corpus, labelled by construction; their reward is the log-odds of the good class
for the continuation. `diversity` is the product of the distinct-n fractions (n = 2, 3, 4)
of the continuation's words. `coherence` and `perplexity` use the reference model
(`model_rewards.py`), and any Hugging Face sequence-classification model given by path is a
value too (`RewardModelSpec`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from llm_modules.alignment.map.corpus import Remark, remarks

CLASSIFIER_REMARKS = 4000
CLASSIFIER_SEED = 7919  # a corpus draw of its own, apart from the LM's training remarks


class ValueScorer(ABC):
    """Scores continuations of prompts on one human value (higher is better)."""

    name: str

    def __call__(self, prompt: str, continuation: str) -> float:
        return float(self.score([prompt], [continuation])[0])

    @abstractmethod
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Rewards of each (prompt, continuation) pair, a float array."""

    def spec(self) -> dict[str, Any]:
        """What the samples header records about this value."""
        return {"name": self.name, "kind": "builtin"}


@dataclass
class ScoringContext:
    """What model-based values share: the reference model, loaded on first use."""

    reference: Path | None = None
    batch_size: int = 128
    loaded: tuple[Any, Any] | None = field(default=None, repr=False)

    def reference_model(self) -> tuple[Any, Any]:
        if self.reference is None:
            raise Pv4fadError("this value needs the reference model (give --model)")
        if self.loaded is None:
            from llm_modules.models import load_causal_lm

            self.loaded = load_causal_lm(self.reference)
        return self.loaded


ValueFactory = Callable[[ScoringContext], ValueScorer]
VALUES: dict[str, ValueFactory] = {}


def register_value(name: str) -> Callable[[ValueFactory], ValueFactory]:
    """Add a built-in value under `name`; the factory builds its scorer from the context."""

    def add(factory: ValueFactory) -> ValueFactory:
        VALUES[name] = factory
        return factory

    return add


# What each classifier value learns: the good class of a remark (None: left out).
WORD_CLASS_LABELS: dict[str, Callable[[Remark], int | None]] = {
    # Remarks with as many good as bad words carry no sentiment label.
    "positiveness": lambda r: None if r.valence == 0 else int(r.valence > 0),
    "harmlessness": lambda r: int(not r.insulting),
    "politeness": lambda r: int(r.polite),
}


@cache
def _word_classifier(name: str) -> tuple[Any, Any]:
    """(vectorizer, logistic regression) for `name`, trained once per process."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    label = WORD_CLASS_LABELS[name]
    labelled = [(r.text, y) for r in remarks(CLASSIFIER_REMARKS, CLASSIFIER_SEED)
                if (y := label(r)) is not None]
    vectorizer = CountVectorizer(token_pattern=r"[a-z]+")
    features = vectorizer.fit_transform([text for text, _ in labelled])
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(features, [y for _, y in labelled])
    return vectorizer, model


class WordClassifierValue(ValueScorer):
    """Log-odds of the good class under a bag-of-words logistic regression."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.vectorizer, self.model = _word_classifier(name)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        features = self.vectorizer.transform([c.lower() for c in continuations])
        return np.asarray(self.model.decision_function(features), dtype=np.float64)


for _name in WORD_CLASS_LABELS:
    register_value(_name)(lambda _context, name=_name: WordClassifierValue(name))


def distinct_fraction(words: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams of `words` (1 when there is no n-gram)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


class DiversityValue(ValueScorer):
    name = "diversity"

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        out = []
        for text in continuations:
            words = text.lower().split()
            out.append(float(np.prod([distinct_fraction(words, n) for n in (2, 3, 4)])))
        return np.asarray(out)


@register_value("diversity")
def _diversity(_context: ScoringContext) -> ValueScorer:
    return DiversityValue()


def known_values() -> list[str]:
    # Model-based values register on import.
    import llm_modules.alignment.map.model_rewards  # noqa: F401

    return sorted(VALUES)


def build_scorers(
    names: Sequence[str],
    context: ScoringContext,
    reward_models: Sequence[Any] = (),
) -> list[ValueScorer]:
    """Scorers for built-in `names` plus each reward-model spec, in that order; unknown or
    repeated names are one-line errors before anything is loaded or generated."""
    known = known_values()
    chosen = [*names, *(spec.name for spec in reward_models)]
    unknown = [name for name in names if name not in VALUES]
    if unknown:
        raise Pv4fadError(f"unknown value {unknown[0]!r}: built-in values are "
                          f"{', '.join(known)} (a reward model needs --reward-model)")
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise Pv4fadError(f"value {repeated[0]!r} is named twice")
    if not chosen:
        raise Pv4fadError("no value to score: give --values and/or --reward-model")
    scorers = [VALUES[name](context) for name in names]
    return scorers + [spec.build(context) for spec in reward_models]


def score_all(
    scorers: Sequence[ValueScorer],
    prompts: Sequence[str],
    continuations: Sequence[str],
    batch_size: int = 512,
    log: Callable[[str], None] = lambda _m: None,
) -> np.ndarray:
    """The reward matrix [n, k] of every pair under every scorer, in batches."""
    columns = []
    for scorer in scorers:
        parts = [
            scorer.score(prompts[start : start + batch_size],
                         continuations[start : start + batch_size])
            for start in range(0, len(prompts), batch_size)
        ]
        columns.append(np.concatenate(parts) if parts else np.zeros(0))
        log(f"scored {len(prompts)} continuations on {scorer.name}")
    return np.stack(columns, axis=1).astype(np.float64)
