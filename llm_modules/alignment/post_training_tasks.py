"""The built-in post-training task: a generated world, an instruction-style SFT set and a
preference set that pull in different directions.

Each seed invents objects (made-up words) with a colour and a home. The base model reads
a corpus of plain sentences about them ("the blick is red . the blick lives in the forest .").
Instructions ask four things about an object, each in two phrasings: its colour, its home
(knowledge from the corpus), to repeat its name, or to give the last of two names (read from
the prompt). The SFT set answers tersely ("red ."), the preference set prefers a full
sentence ("the blick is red ."). On a share of the pairs the rejected response is exactly the
SFT style with the right content, so lowering it undoes SFT (the conflict); on the rest it
is a full sentence with wrong content, which SFT's knowledge also rejects.

Items (object, question, phrasing) are split at random into SFT training, preference
training and held-out SFT and preference sets; every fact stays in the corpus, so held-out
questions are answerable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llm_modules.alignment.post_training_data import PreferencePair, SFTExample

GENERATOR_VERSION = 1

COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "grey")
HOMES = ("forest", "river", "desert", "mountain", "city", "farm", "cave", "island")
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "bl", "tr", "sk")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "n", "k", "r", "sh", "x")

# question -> two prompt phrasings; {x} is the object, {y} a second object
PROMPTS = {
    "color": ("what color is the {x} ?", "name the color of the {x} ."),
    "home": ("where does the {x} live ?", "name the home of the {x} ."),
    "repeat": ("repeat the word {x} .", "say the word {x} again ."),
    "last": ("say the last word of {y} {x} .", "which word comes last in {y} {x} ?"),
}
FULL = {
    "color": "the {x} is {v} .",
    "home": "the {x} lives in the {v} .",
    "repeat": "the word is {v} .",
    "last": "the last word is {v} .",
}


@dataclass(frozen=True)
class TaskConfig:
    """Size of the generated task; shares are of the (object, question, phrasing) items."""

    n_objects: int = 64
    style_share: float = 0.5  # pairs whose rejected response is the SFT-style answer
    sft_share: float = 0.35
    preference_share: float = 0.35  # the rest is split evenly into the two held-out sets
    seed: int = 0


@dataclass(frozen=True)
class PostTrainingTask:
    corpus: list[str]  # plain sentences for the base model
    sft_train: list[SFTExample]
    preference_train: list[PreferencePair]
    sft_eval: list[SFTExample]
    preference_eval: list[PreferencePair]

    def texts(self) -> list[str]:
        """Every text of the task (for a word-level vocabulary)."""
        out = list(self.corpus)
        for ex in self.sft_train + self.sft_eval:
            out += [ex.prompt, ex.response]
        for pair in self.preference_train + self.preference_eval:
            out += [pair.prompt, pair.chosen, pair.rejected]
        return out


def _object_names(count: int, rng: random.Random) -> list[str]:
    taken = set(COLORS) | set(HOMES)
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(p) for p in (ONSETS, VOWELS, ONSETS, VOWELS, CODAS))
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def generate_task(config: TaskConfig) -> PostTrainingTask:
    """The corpus and the four data sets of one seed."""
    rng = random.Random(config.seed)
    objects = _object_names(config.n_objects, rng)
    facts = {x: {"color": rng.choice(COLORS), "home": rng.choice(HOMES)} for x in objects}
    corpus = []
    for x in objects:
        color = f"the {x} is {facts[x]['color']} ."
        home = f"the {x} lives in the {facts[x]['home']} ."
        corpus += [f"{color} {home}", f"{home} {color}"]
    items = [(x, q, p) for x in objects for q in PROMPTS for p in range(2)]
    rng.shuffle(items)
    n_sft = round(config.sft_share * len(items))
    n_pref = round(config.preference_share * len(items))
    n_eval = (len(items) - n_sft - n_pref) // 2
    cuts = (n_sft, n_sft + n_pref, n_sft + n_pref + n_eval, len(items))
    groups = [items[a:b] for a, b in zip((0, *cuts[:-1]), cuts, strict=True)]

    def answer(x: str, question: str) -> tuple[str, str, str]:
        """(prompt's second object, right value, a wrong value) of one question."""
        other = rng.choice([o for o in objects if o != x])
        if question in facts[x]:
            pool = COLORS if question == "color" else HOMES
            value = facts[x][question]
            return other, value, rng.choice([v for v in pool if v != value])
        return other, x, other

    def sft(group: list[tuple[str, str, int]]) -> list[SFTExample]:
        out = []
        for x, q, p in group:
            other, value, _ = answer(x, q)
            out.append(SFTExample(_prompt(q, p, x, other), f"{value} ."))
        return out

    def preferences(group: list[tuple[str, str, int]]) -> list[PreferencePair]:
        out = []
        for x, q, p in group:
            other, value, wrong = answer(x, q)
            chosen = FULL[q].format(x=x, v=value)
            rejected = f"{value} ." if rng.random() < config.style_share else FULL[q].format(
                x=x, v=wrong)
            out.append(PreferencePair(_prompt(q, p, x, other), chosen, rejected))
        return out

    return PostTrainingTask(corpus, sft(groups[0]), preferences(groups[1]), sft(groups[2]),
                            preferences(groups[3]))


def _prompt(question: str, phrasing: int, x: str, other: str) -> str:
    return f"instruction : {PROMPTS[question][phrasing].format(x=x, y=other)} response :"
