"""The built-in task: three-class sentiment of generated financial headlines, and the
pretraining corpus of the tiny LM that learns it in context, poorly and with label bias.

A headline carries three class words (e.g. "surged", "plunged", "unchanged"), each of its
own class with probability 0.6 and otherwise of another class, among filler words. The
corpus is a stream of documents, each in one of three prompt formats with its own label
words, holding 1-9 labelled headlines. Three biases are put in on purpose, as pretraining
data has them: each format has its own skewed label prior; labels are sticky within a
document (half of the time a headline repeats the previous label), so a model learns to
copy recent and majority demonstration labels; and 10 % of labels are replaced by draws
from the format's prior. Test sets are balanced and drawn independently of order, so
these habits cost accuracy there and calibration has something to fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llm_modules.calibration.data import Example
from llm_modules.calibration.prompts import CONTENT_FREE_INPUTS, PromptSpec

CLASSES = ("negative", "neutral", "positive")
SIGNAL_WORDS = {
    "negative": "fell dropped slumped missed plunged downgraded weak loss lawsuit default "
    "cut warning".split(),
    "neutral": "held steady unchanged flat scheduled announced reviewed maintained routine "
    "filed expected met".split(),
    "positive": "rose gained surged beat upgraded strong record profit growth rally raised "
    "boosted".split(),
}
FILLER = "shares of the after in on at for quarter results market analysts said today " \
    "trading investors stock company report week year".split()
COMPANIES = "Halcyon Meridian Brightwater Copperline Northgate Silverleaf Ironbridge Oakhaven " \
    "Redfern Stonebrook Tidewell Westmarch Ashgrove Fenwick Larkspur Rookwood".split()

# The three prompt formats: template, label words per class (the corpus writes the second
# word of a class 30 % of the time; scoring sums both).
PROMPTS = (
    PromptSpec(
        "Headline: {text} Sentiment: {label}",
        {"negative": ("negative", "bad"), "neutral": ("neutral",),
         "positive": ("positive", "good")},
        separator="\n", name="sentiment",
    ),
    PromptSpec(
        "News: {text} Outlook: {label}",
        {"negative": ("down",), "neutral": ("flat",), "positive": ("up",)},
        separator="\n", name="outlook",
    ),
    PromptSpec(
        "{text} => {label}",
        {"negative": ("sell",), "neutral": ("hold",), "positive": ("buy",)},
        separator="\n", name="trade",
    ),
)
TASK_PURITY = 0.6  # chance that a class word of a task headline belongs to its class
GENERATOR_VERSION = 1  # part of the model cache key: bump when the generator changes


@dataclass(frozen=True)
class CorpusConfig:
    """The tiny LM's pretraining corpus: one field per bias put in on purpose."""

    share: tuple[float, ...] = (0.5, 0.3, 0.2)  # of documents in each prompt format
    priors: tuple[tuple[float, ...], ...] = ((0.15, 0.25, 0.6), (0.55, 0.3, 0.15),
                                             (0.2, 0.6, 0.2))  # label prior per format
    purity: float = TASK_PURITY  # the corpus headlines are like the task's
    sticky: float = 0.5  # chance that a label repeats the previous one in its document
    label_noise: float = 0.1  # chance that a label is a fresh draw from the prior
    second_word: float = 0.3  # chance of writing a class's second label word


def headline(rng: random.Random, label: str, purity: float = TASK_PURITY) -> str:
    """A headline of class `label`: a company, three class words (each of `label` with
    probability `purity`, else of another class) and three filler words."""
    classes = [label if rng.random() < purity else rng.choice([c for c in CLASSES if c != label])
               for _ in range(3)]
    words = [rng.choice(SIGNAL_WORDS[c]) for c in classes] + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return " ".join([rng.choice(COMPANIES), *words])


def balanced_examples(n: int, seed: int) -> list[Example]:
    """n headlines with balanced classes, in a seeded random order."""
    rng = random.Random(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    rng.shuffle(labels)
    return [Example(headline(rng, label), label) for label in labels]


def _corpus_document(rng: random.Random, config: CorpusConfig) -> str:
    which = rng.choices(range(len(PROMPTS)), weights=config.share)[0]
    spec, prior = PROMPTS[which], config.priors[which]
    parts, label = [], None
    for _ in range(rng.randint(1, 9)):
        if label is None or rng.random() >= config.sticky:
            label = rng.choices(CLASSES, weights=prior)[0]
        text = headline(rng, label, config.purity)
        written = label
        if rng.random() < config.label_noise:
            written = rng.choices(CLASSES, weights=prior)[0]
        words = spec.labels[written]
        word = words[1] if len(words) > 1 and rng.random() < config.second_word else words[0]
        parts.append(spec.demonstration(Example(text, written), word))
    return spec.separator.join(parts)


def corpus(config: CorpusConfig, n_documents: int, seed: int) -> list[str]:
    """The tiny LM's pretraining documents."""
    rng = random.Random(seed)
    return [_corpus_document(rng, config) for _ in range(n_documents)]


def vocabulary_texts() -> list[str]:
    """Every word the task can produce, plus the content-free inputs (never trained on)."""
    words = [*FILLER, *COMPANIES, *CONTENT_FREE_INPUTS]
    words += [w for ws in SIGNAL_WORDS.values() for w in ws]
    for spec in PROMPTS:
        words += spec.template.replace("{text}", " ").replace("{label}", " ").split()
        words += [w for ws in spec.labels.values() for w in ws]
    return [" ".join(w for w in words if w)]


@dataclass(frozen=True)
class TaskSplits:
    pool: list[Example]  # where demonstrations come from
    validation: list[Example]  # labelled prompts for fitting calibrators
    test: list[Example]


def task_splits(seed: int, pool: int = 300, validation: int = 300, test: int = 300) -> TaskSplits:
    return TaskSplits(
        balanced_examples(pool, seed * 3 + 1),
        balanced_examples(validation, seed * 3 + 2),
        balanced_examples(test, seed * 3 + 3),
    )
