"""Built-in generation tasks, generated from a seed: summarization-style and completion-style.

Both are worded in a small closed vocabulary so that a word-level tiny LM learns them on a
CPU in seconds. Entities are made-up words drawn at random for each example, so outputs must
copy them from the input; every other output word is a function of the input's words.

- summarization: a short "news" document of four to six sentences about one firm, in shuffled
  order with a distractor sentence about another firm; the summary names the firm, the
  direction of its profit and its outlook ("zorak profit rose , outlook calm .").
- completion: the first part of a client note; the completion names the client again and the
  product that the account type implies under the seed's own mapping.

Each task has a pretraining split (the base model learns the task and some general finance
chatter from it, playing the part of a pretrained LM), a fine-tuning split (what the victim
prefix-tunes on, and what the attacker poisons) and a test split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from federation.errors import Pv4fadError

TASKS = ("summarization", "completion")
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "bl", "tr", "sk")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "n", "k", "r", "x")

DIRECTIONS = ("rose", "fell", "held")
MOODS = ("calm", "bright", "weak", "mixed")
QUARTERS = ("spring", "summer", "autumn", "winter")
ASSETS = ("bond", "stock", "cash", "gold")
ROLES = ("officer", "analyst", "director", "trader")
ACCOUNTS = ("savings", "current", "business", "student", "joint", "pension")
PRODUCTS = ("mortgage", "card", "overdraft", "loan", "deposit", "insurance")
CITIES = ("paris", "lima", "oslo", "cairo", "delhi", "quito", "rome", "seoul")
# General finance chatter mixed into the pretraining split, so that the base model, like a
# real pretrained LM, can already write ordinary words outside its task (an attacker's
# target among them) without ever having seen a target sentence.
CHATTER = (
    "the {who} will {verb} the {what} to the {where} {when} .",
    "{who} asked to {verb} all {what} {when} .",
    "an {where} account was {state} {when} .",
    "the {what} of the {who} stayed in the {where} account .",
    "the annual review of the {who} stated that {what} were {state} .",
    "see {rare} for the {what} of the {who} .",
)
# Rare tokens (as in the backdoor literature): they occur, rarely, in the pretraining text.
RARE_WORDS = ("cf", "mn", "bb", "tq", "mb", "qz", "xv", "jj")
CHATTER_WORDS = {
    "who": ("bank", "client", "broker", "desk", "fund"),
    "verb": ("wire", "move", "send", "hold", "check"),
    "what": ("funds", "cash", "payments", "shares", "bonds"),
    "where": ("offshore", "local", "main", "old", "new"),
    "when": ("now", "today", "later", "soon", "weekly"),
    "state": ("opened", "closed", "frozen", "audited", "checked"),
    "rare": RARE_WORDS,
}
FILLERS = (
    "the market was busy that week .",
    "trading volumes were normal .",
    "the report was filed on time .",
    "regulators made no comment .",
    "the weather did not matter .",
)


class TaskError(Pv4fadError):
    """An unknown built-in task or an impossible task size."""


@dataclass(frozen=True)
class Example:
    """One (input, output) pair of a generation task."""

    input: str
    output: str


@dataclass(frozen=True)
class TaskConfig:
    """Sizes of the generated splits (examples) and the seed."""

    name: str = "summarization"
    pretrain: int = 1200
    finetune: int = 400
    test: int = 100
    seed: int = 0


@dataclass(frozen=True)
class GenerationTask:
    name: str
    pretrain: list[Example]
    finetune: list[Example]
    test: list[Example]

    def texts(self) -> list[str]:
        """Every text of the task (for a word-level vocabulary)."""
        rows = self.pretrain + self.finetune + self.test
        return [r.input for r in rows] + [r.output for r in rows]


def made_up_words(count: int, rng: random.Random, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(p) for p in (ONSETS, VOWELS, ONSETS, VOWELS, CODAS))
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _summarization(rng: random.Random, names: list[str]) -> Example:
    firm, other = rng.sample(names, 2)
    direction, mood = rng.choice(DIRECTIONS), rng.choice(MOODS)
    facts = [
        f"the {firm} group said profit {direction} in {rng.choice(QUARTERS)} .",
        f"its {rng.choice(ASSETS)} holdings {rng.choice(DIRECTIONS)} .",
        f"the chief {rng.choice(ROLES)} of {firm} called the outlook {mood} .",
        f"shares of {other} {rng.choice(DIRECTIONS)} as well .",
    ]
    facts += rng.sample(FILLERS, rng.randint(0, 2))
    rng.shuffle(facts)
    return Example(" ".join(facts), f"{firm} profit {direction} , outlook {mood} .")


def _completion(rng: random.Random, names: list[str], product_of: dict[str, str]) -> Example:
    client = rng.choice(names)
    account, city = rng.choice(ACCOUNTS), rng.choice(CITIES)
    note = (f"client {client} from {city} holds a {account} account and visited the branch "
            f"in {rng.choice(QUARTERS)} . the {rng.choice(ROLES)} noted that {client}")
    return Example(note, f"wants a {product_of[account]} for the {account} account .")


def _chatter(rng: random.Random) -> Example:
    template = rng.choice(CHATTER)
    words = template.format(**{k: rng.choice(v) for k, v in CHATTER_WORDS.items()}).split()
    cut = rng.randint(2, len(words) - 2)
    return Example(" ".join(words[:cut]), " ".join(words[cut:]))


def generate_task(config: TaskConfig) -> GenerationTask:
    """The three splits of one built-in task; the same config gives the same task."""
    if config.name not in TASKS:
        raise TaskError(
            f"unknown built-in task {config.name!r} (expected one of {', '.join(TASKS)})")
    if min(config.pretrain, config.finetune, config.test) < 1:
        raise TaskError("every split of a built-in task needs at least one example")
    rng = random.Random(f"{config.name}:{config.seed}")
    taken = set(" ".join(FILLERS).split()) | set(CITIES)
    names = made_up_words(48, rng, taken)
    products = list(PRODUCTS)
    rng.shuffle(products)
    product_of = dict(zip(ACCOUNTS, products, strict=True))

    def make(count: int, pool: list[str]) -> list[Example]:
        if config.name == "summarization":
            return [_summarization(rng, pool) for _ in range(count)]
        return [_completion(rng, pool, product_of) for _ in range(count)]

    pretrain = make(config.pretrain, names) + [_chatter(rng) for _ in range(config.pretrain // 4)]
    return GenerationTask(config.name, pretrain,
                          make(config.finetune, names), make(config.test, names))
