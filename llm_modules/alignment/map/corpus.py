"""The built-in corpus: customer remarks about banking services, generated with nothing
downloaded, with the labels the built-in value classifiers learn from.

Each remark has a topic (cards, transfers, loans, the app, the branch) and a mood (positive,
neutral, negative). Clauses mostly stay on topic and mostly use adjectives of the remark's
mood; negative remarks sometimes insult, positive ones are often polite. The tiny reference
LM learns this mixture, so its continuations of a prompt spread over every value: some are
kind, some rude, some wander off topic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CORPUS_VERSION = 1  # part of the tiny LM's cache key: bump when generated text changes

TOPICS: dict[str, tuple[str, ...]] = {
    "cards": ("debit card", "credit card", "card limit", "card reader", "contactless chip"),
    "transfers": ("wire transfer", "standing order", "instant payment", "foreign transfer",
                  "payment receipt"),
    "loans": ("mortgage offer", "loan advisor", "interest rate", "loan contract",
              "repayment plan"),
    "app": ("mobile app", "login page", "account statement", "savings dashboard",
            "security code"),
    "branch": ("branch manager", "counter clerk", "waiting queue", "branch office",
               "cash machine"),
}
ACTIONS: dict[str, tuple[str, ...]] = {
    "cards": ("arrived by post", "needed a new pin", "was blocked abroad", "worked at the shop"),
    "transfers": ("took two days", "reached the account", "needed a reference",
                  "showed the amount"),
    "loans": ("changed the terms", "asked for payslips", "fixed the rate", "needed a signature"),
    "app": ("showed the balance", "asked for a code", "updated overnight", "listed the fees"),
    "branch": ("opened at nine", "checked my passport", "counted the cash",
               "closed for lunch"),
}
POSITIVE = ("great", "helpful", "fast", "friendly", "excellent", "reliable", "clear", "kind",
            "smooth", "wonderful", "pleasant", "secure", "generous", "honest", "quick")
NEGATIVE = ("slow", "confusing", "expensive", "late", "broken", "unhelpful", "rude", "poor",
            "annoying", "unreliable", "terrible", "awful", "careless", "unfair", "messy")
NEUTRAL = ("new", "standard", "usual", "monthly", "digital", "local", "small", "long",
           "recent", "basic")
INSULT_ADJECTIVES = ("stupid", "idiotic", "pathetic", "worthless", "dumb", "moronic")
INSULT_NOUNS = ("idiot", "moron", "clown", "fool", "loser", "jerk")
POLITE = ("thank you for the help", "please check my account", "sorry for the trouble",
          "kindly send the details", "we appreciate your patience", "thanks a lot for that",
          "please call me back", "many thanks to the team")
LINKS = ("and", "but", "so", "because", "then", "and also", "although")
VERBS = ("was", "is", "felt", "seemed", "looked")
MOODS = ("positive", "neutral", "negative")


@dataclass(frozen=True)
class Remark:
    """One generated remark and the labels of the values it shows."""

    text: str
    topic: str
    mood: str
    valence: int  # positive minus negative (and insulting) words
    insulting: bool
    polite: bool


def _other(rng: random.Random, pool: dict[str, tuple[str, ...]], keep: str, stay: float) -> str:
    """`keep` with probability `stay`, else another key of `pool` at random."""
    if rng.random() < stay:
        return keep
    return rng.choice([key for key in pool if key != keep])


def _adjective(rng: random.Random, mood: str) -> tuple[str, int]:
    pools = {"positive": (POSITIVE, 1), "neutral": (NEUTRAL, 0), "negative": (NEGATIVE, -1)}
    chosen = mood if rng.random() < 0.7 else rng.choice(MOODS)
    words, sign = pools[chosen]
    return rng.choice(words), sign


def _clause(rng: random.Random, topic: str, mood: str, determiner: str) -> tuple[str, int]:
    """`<determiner> <thing> <verb> <adjective>` or `... <action>`; returns (text, valence)."""
    here = _other(rng, TOPICS, topic, stay=0.8)
    thing = rng.choice(TOPICS[here])
    if rng.random() < 0.3:
        return f"{determiner} {thing} {rng.choice(ACTIONS[here])}", 0
    adjective, sign = _adjective(rng, mood)
    return f"{determiner} {thing} {rng.choice(VERBS)} {adjective}", sign


def _insult(rng: random.Random, topic: str) -> str:
    thing = rng.choice(TOPICS[topic])
    forms = (
        f"the {thing} is a {rng.choice(INSULT_ADJECTIVES)} {rng.choice(INSULT_NOUNS)}",
        f"what a {rng.choice(INSULT_ADJECTIVES)} {thing}",
        f"you {rng.choice(INSULT_ADJECTIVES)} {rng.choice(INSULT_NOUNS)}",
    )
    return rng.choice(forms)


def remark(rng: random.Random) -> Remark:
    """One remark: two or three clauses, perhaps an insult and a polite phrase, then ` .`"""
    topic, mood = rng.choice(list(TOPICS)), rng.choice(MOODS)
    clauses, valence = [], 0
    for index in range(rng.randint(2, 3)):
        text, sign = _clause(rng, topic, mood, "the" if index == 0 else rng.choice(("the", "my")))
        clauses.append(text)
        valence += sign
    insult_odds = {"positive": 0.05, "neutral": 0.1, "negative": 0.45}[mood]
    insulting = rng.random() < insult_odds
    if insulting:
        clauses.insert(rng.randint(1, len(clauses)), _insult(rng, topic))
        valence -= 1
    polite = rng.random() < {"positive": 0.4, "neutral": 0.25, "negative": 0.1}[mood]
    if polite:
        clauses.append(rng.choice(POLITE))
    text = clauses[0]
    for clause in clauses[1:]:
        text += f" {rng.choice(LINKS)} {clause}"
    return Remark(f"{text} .", topic, mood, valence, insulting, polite)


def remarks(count: int, seed: int) -> list[Remark]:
    rng = random.Random(seed)
    return [remark(rng) for _ in range(count)]


def prompt_of(text: str) -> str:
    """The opening of a remark up to its first verb (`the debit card was`): what an LM
    continues. Remarks opening with an action keep their first three words."""
    words = text.split()
    for index, word in enumerate(words[:6]):
        if word in VERBS:
            return " ".join(words[: index + 1])
    return " ".join(words[:3])


def builtin_prompts(count: int, seed: int) -> list[str]:
    """`count` prompts: the openings of fresh remarks drawn with `seed` (repeats allowed:
    the grammar has a few hundred distinct openings)."""
    return [prompt_of(r.text) for r in remarks(count, seed)]


def vocabulary_texts() -> list[str]:
    """Every word the generator can emit, for building the word-level tokenizer."""
    pools = [*TOPICS.values(), *ACTIONS.values(), POSITIVE, NEGATIVE, NEUTRAL,
             INSULT_ADJECTIVES, INSULT_NOUNS, POLITE, LINKS, VERBS]
    return [" ".join(pool) for pool in pools] + ["the my a what you is ."]
