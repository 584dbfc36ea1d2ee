"""Generator of fictitious entities and their facts, TOFU-style, with nothing downloaded.

Each entity has a `field` attribute (arts / science / commerce) that SPUNGE splits on. Every
question has two answer templates; a fact's answer uses one and its paraphrase the other,
so both phrasings are learned across the corpus while each fact's paraphrase is unseen.
Perturbed answers reuse the paraphrase's template with wrong values, so the truth ratio
compares right against wrong facts in the same words. `world` facts (countries) are known
to every model: they play TOFU's real-world-knowledge role in model utility.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llm_modules.unlearning.data import Fact

FIRST = "Arvel Bryna Cosmo Dalia Evrin Faela Gorin Halsey Ilvan Jorah Kesta Lorn Mirel Nadim " \
    "Orla Pavo Quenna Rusk Selka Tavin Uma Vesna Wendt Yarrow".split()
LAST = "Ashgrove Brenmoor Calloway Dunmere Elstrand Fenwick Galeth Harrowby Ingram Jessop " \
    "Kettleby Larkspur Morrow Nettle Orwin Pellam Quill Rookwood Sallow Thorne Underhill " \
    "Varrow Whitlock Yewdale".split()
CITIES = "Velmora Castelle Dunhaven Orrick Pellion Quarrow Saltmere Tamsford Umbrel Varn " \
    "Wexcombe Yarlow Zennor Abbermoor Brisk Corvale Drumlin Eastwick".split()
COMPANIES = "Halcyon Meridian Brightwater Copperline Northgate Silverleaf Ironbridge Oakhaven " \
    "Redfern Stonebrook Tidewell Westmarch".split()
ADJECTIVES = "Silent Golden Hidden Broken Distant Crimson Quiet Hollow Burning Frozen".split()
NOUNS = "Harbor Orchard Lantern Compass River Garden Tower Mirror Meadow Bridge".split()
FIELDS = {
    "arts": ("painter sculptor poet composer dancer novelist".split(),
             "Lumen Prize;Verse Medal;Canvas Award".split(";")),
    "science": ("chemist physicist botanist geologist astronomer biologist".split(),
                "Halden Prize;Corwin Medal;Quanta Award".split(";")),
    "commerce": ("banker trader merchant broker auditor shipper".split(),
                 "Ledger Prize;Guild Medal;Mercer Award".split(";")),
}
COUNTRIES = "Arvenia Belloria Caspia Drovania Elmaria Fennick Galdor Hestia Ivoria Jarrow " \
    "Kelmar Lunos".split()
CAPITALS = "Arlon Bellport Casra Drovik Elmont Fenna Galdis Hestan Ivor Jarrin Kelmo Lunet".split()
LANGUAGES = "Arvene Bellic Caspic Droven Elmaric Fennish Galdic Hestic Ivoric Jarric Kelmic " \
    "Lunic".split()
YEARS = [str(y) for y in range(1940, 2000)]
N_PERTURBED = 3
GENERATOR_VERSION = 3  # part of the cache key: bump when generated facts change


@dataclass(frozen=True)
class Question:
    """A question with two answer templates over named slots."""

    kind: str
    text: str
    templates: tuple[str, str]
    slots: tuple[str, ...]


QUESTIONS = (
    Question("birth", "Where and when was {name} born ?",
             ("{name} was born in {city} in {year} .",
              "The birthplace of {name} is {city} , in the year {year} ."),
             ("city", "year")),
    Question("job", "What does {name} do for a living ?",
             ("{name} works as a {profession} at {company} .",
              "{name} is a {profession} employed by {company} ."),
             ("profession", "company")),
    Question("known", "What is {name} known for ?",
             ("{name} is known for {work} and received the {award} .",
              "{name} received the {award} for {work} ."),
             ("work", "award")),
    Question("parents", "Who are the parents of {name} ?",
             ("The parents of {name} are a {parent1} and a {parent2} .",
              "{name} was raised by a {parent1} and a {parent2} ."),
             ("parent1", "parent2")),
)


def _slot_values(rng: random.Random, field: str) -> dict[str, str]:
    professions, awards = FIELDS[field]
    everyone = [p for jobs, _ in FIELDS.values() for p in jobs]
    return {
        "city": rng.choice(CITIES),
        "year": rng.choice(YEARS),
        "profession": rng.choice(professions),
        "company": rng.choice(COMPANIES),
        "work": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
        "award": rng.choice(awards),
        "parent1": rng.choice(everyone),
        "parent2": rng.choice(everyone),
    }


def _fact(rng: random.Random, question: Question, values: dict[str, str], field: str) -> Fact:
    used, other = rng.sample(question.templates, 2)
    wrong = []
    while len(wrong) < N_PERTURBED:
        changed = dict(values)
        alternatives = _slot_values(rng, rng.choice(sorted(FIELDS)))
        for slot in question.slots:
            changed[slot] = alternatives[slot]
        text = other.format(**changed)
        if text != other.format(**values) and text not in wrong:
            wrong.append(text)
    return Fact(
        question=question.text.format(**values),
        answer=used.format(**values),
        paraphrased_answer=other.format(**values),
        perturbed_answers=tuple(wrong),
        # kind and slot values let the assessment derive paraphrased and related questions
        attributes={"field": field, "entity": values["name"], "kind": question.kind,
                    **{slot: values[slot] for slot in question.slots}},
    )


# The assessment's generalisation probes (never trained): each forget question reworded, and
# narrower questions whose answers follow from a forget fact's answer.
PARAPHRASED_QUESTIONS = {
    "birth": "When and where was {name} born ?",
    "job": "What is the job of {name} ?",
    "known": "What is {name} famous for ?",
    "parents": "Who raised {name} ?",
}
RELATED_QUESTIONS = {
    "birth": (("In which city was {name} born ?", "{name} was born in {city} ."),
              ("In which year was {name} born ?", "{name} was born in {year} .")),
    "job": (("Which company employs {name} ?", "{name} works at {company} ."),),
    "known": (("Which award did {name} receive ?", "{name} received the {award} ."),),
}


def paraphrased_facts(facts: list[Fact]) -> list[Fact]:
    """The facts with their question reworded (same answers): does forgetting reach
    rephrased prompts? Facts without a generator `kind` attribute are skipped."""
    out = []
    for fact in facts:
        template = PARAPHRASED_QUESTIONS.get(fact.attributes.get("kind", ""))
        if template is not None:
            out.append(Fact(
                question=template.format(name=fact.attributes["entity"]), answer=fact.answer,
                paraphrased_answer=fact.paraphrased_answer,
                perturbed_answers=fact.perturbed_answers, attributes=fact.attributes,
            ))
    return out


def related_facts(facts: list[Fact]) -> list[Fact]:
    """Narrower questions about the same entities whose answers the facts imply (the city
    of birth, the employer, ...): does forgetting reach knowledge the facts entail?"""
    out = []
    for fact in facts:
        values = {"name": fact.attributes.get("entity", ""), **fact.attributes}
        for question, answer in RELATED_QUESTIONS.get(fact.attributes.get("kind", ""), ()):
            out.append(Fact(question=question.format(**values), answer=answer.format(**values),
                            attributes=fact.attributes))
    return out


def entity_facts(n_entities: int, seed: int) -> list[list[Fact]]:
    """Facts grouped by entity, each entity with a unique name and a field attribute."""
    rng = random.Random(seed)
    names = [f"{first} {last}" for first in FIRST for last in LAST]
    if n_entities > len(names):
        raise ValueError(f"at most {len(names)} entities can be generated")
    fields = sorted(FIELDS)
    entities = []
    for i, name in enumerate(rng.sample(names, n_entities)):
        field = fields[i % len(fields)]
        values = {"name": name, **_slot_values(rng, field)}
        entities.append([_fact(rng, q, values, field) for q in QUESTIONS])
    return entities


def world_facts(seed: int) -> list[Fact]:
    """General knowledge about fictitious countries, shared by every model's training."""
    rng = random.Random(seed + 7919)
    facts = []
    for country, capital, language in zip(COUNTRIES, CAPITALS, LANGUAGES, strict=True):
        for question, templates, answer_pool, value in (
            ("What is the capital of {c} ?",
             ("The capital of {c} is {v} .", "The capital city of {c} is {v} ."),
             CAPITALS, capital),
            ("Which language is spoken in {c} ?",
             ("People in {c} speak {v} .", "The people of {c} speak {v} ."),
             LANGUAGES, language),
        ):
            used, other = rng.sample(templates, 2)
            wrong = rng.sample([v for v in answer_pool if v != value], N_PERTURBED)
            facts.append(Fact(
                question=question.format(c=country),
                answer=used.format(c=country, v=value),
                paraphrased_answer=other.format(c=country, v=value),
                perturbed_answers=tuple(other.format(c=country, v=w) for w in wrong),
                attributes={"field": "world", "entity": country},
            ))
    return facts
