"""Prompt templates with k demonstrations, label words, and seeded demonstration sampling.

A template holds `{text}` and then `{label}`, e.g. "Review: {text}\nSentiment: {label}".
A demonstration fills both (with the first label word of its class); the query keeps what
precedes `{label}` without its trailing whitespace, and each label word is scored as the
continuation "whitespace + word", so "Sentiment:" is followed by " positive".
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.errors import Pv4fadError
from llm_modules.calibration.data import Example

SCORINGS = ("first-token", "sequence")
# Content-free inputs of contextual calibration (Zhao et al. 2021), as LinC uses them.
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


class PromptError(Pv4fadError):
    """A prompt specification is malformed (template, label words, scoring)."""


@dataclass(frozen=True)
class PromptSpec:
    """How a classification example becomes a prompt, and which words name each class.

    `labels` maps each class name to its label words (several words are summed; the first
    one is written in demonstrations). `scoring` is "first-token" (probability of each
    word's first token after the prompt) or "sequence" (probability of the whole word).
    """

    template: str
    labels: dict[str, tuple[str, ...]]
    separator: str = "\n\n"
    scoring: str = "first-token"
    name: str = ""

    def __post_init__(self) -> None:
        where = f"prompt {self.name!r}" if self.name else "prompt"
        if self.template.count("{text}") != 1 or self.template.count("{label}") != 1:
            raise PromptError(f"{where}: the template needs {{text}} and {{label}} once each")
        if self.template.index("{text}") > self.template.index("{label}"):
            raise PromptError(f"{where}: {{text}} must come before {{label}} in the template")
        if len(self.labels) < 2:
            raise PromptError(f"{where}: at least two classes are needed, got {len(self.labels)}")
        for name, words in self.labels.items():
            if not words or any(not w.strip() for w in words):
                raise PromptError(f"{where}: class {name!r} needs non-empty label words")
        if self.scoring not in SCORINGS:
            raise PromptError(f"{where}: scoring {self.scoring!r} is not one of {SCORINGS}")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.labels)

    def _parts(self) -> tuple[str, str, str]:
        before, rest = self.template.split("{text}")
        middle, after = rest.split("{label}")
        return before, middle, after

    def demonstration(self, example: Example, word: str | None = None) -> str:
        """The filled template; `word` defaults to the first label word of the class."""
        before, middle, after = self._parts()
        return before + example.text + middle + (word or self.labels[example.label][0]) + after

    def query(self, text: str) -> str:
        before, middle, _ = self._parts()
        return before + text + middle.rstrip()

    @property
    def gap(self) -> str:
        """What separates the query from a label word (the template's whitespace)."""
        _, middle, _ = self._parts()
        return middle[len(middle.rstrip()) :]

    def prompt(self, demonstrations: Sequence[Example], text: str) -> str:
        return self.separator.join(
            [*(self.demonstration(d) for d in demonstrations), self.query(text)]
        )

    def key(self) -> dict:
        """What identifies this prompt for the result cache."""
        return {"template": self.template, "labels": self.labels, "separator": self.separator,
                "scoring": self.scoring}

    def to_json(self) -> dict:
        return {**asdict(self), "labels": {k: list(v) for k, v in self.labels.items()}}


def prompt_from_json(record: object, where: str = "prompt") -> PromptSpec:
    """A PromptSpec from its JSON form; a missing or wrong field is a one-line PromptError."""
    if not isinstance(record, dict) or "template" not in record or "labels" not in record:
        raise PromptError(f"{where}: expected an object with 'template' and 'labels'")
    labels = record["labels"]
    if not isinstance(labels, dict) or not all(isinstance(w, list) for w in labels.values()):
        raise PromptError(f"{where}: 'labels' must map each class to a list of label words")
    known = {"template", "labels", "separator", "scoring", "name"}
    unknown = sorted(set(record) - known)
    if unknown:
        raise PromptError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return PromptSpec(
        template=str(record["template"]),
        labels={str(k): tuple(str(w) for w in v) for k, v in labels.items()},
        separator=str(record.get("separator", "\n\n")),
        scoring=str(record.get("scoring", "first-token")),
        name=str(record.get("name", "")),
    )


def load_prompt(path: str | Path) -> PromptSpec:
    where = Path(path)
    if not where.is_file():
        raise PromptError(f"prompt file {str(path)!r} does not exist")
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PromptError(f"{where}: not valid JSON ({exc.msg})") from exc
    spec = prompt_from_json(record, str(where))
    return spec if spec.name else PromptSpec(**{**spec.__dict__, "name": where.stem})


def save_prompt(spec: PromptSpec, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec.to_json(), indent=1))
    return out


def sample_demonstrations(pool: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k distinct examples drawn from `pool` with `seed`, in a seeded random order."""
    if k > len(pool):
        raise PromptError(f"cannot draw {k} demonstrations from a pool of {len(pool)} examples")
    return random.Random(seed).sample(list(pool), k)


def permutations(demonstrations: Sequence[Example], count: int, seed: int) -> list[list[Example]]:
    """Up to `count` distinct orders of the same demonstrations (the given order first)."""
    rng = random.Random(seed)
    orders = [list(demonstrations)]
    seen = {tuple(range(len(demonstrations)))}
    limit = 1
    for n in range(2, len(demonstrations) + 1):
        limit *= n
    while len(orders) < min(count, limit):
        order = tuple(rng.sample(range(len(demonstrations)), len(demonstrations)))
        if order not in seen:
            seen.add(order)
            orders.append([demonstrations[i] for i in order])
    return orders


def with_label_counts(
    pool: Sequence[Example], counts: dict[str, int], seed: int
) -> list[Example]:
    """Demonstrations with exactly `counts[c]` examples of class c, in a seeded order."""
    rng = random.Random(seed)
    chosen: list[Example] = []
    for label, count in counts.items():
        members = [e for e in pool if e.label == label]
        if count > len(members):
            raise PromptError(f"the pool has {len(members)} {label!r} examples, {count} needed")
        chosen += rng.sample(members, count)
    rng.shuffle(chosen)
    return chosen
