"""Relations: facts ``(subject, object)`` from the knowledge base and the templates that state them.

Every relation has at least five training templates (used in the corpus) and at least two
held-out templates that never occur in training, so accuracy on the held-out ones measures
extractable knowledge rather than one memorised phrasing. A template is a sentence ending
with ``{o}.``; the prompt is everything before `` {o}`` and the answer is ``" " + object``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from replab.world import kb


def _an(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class Fact:
    """One fact; ``fields`` fills extra template slots (articles, numbers)."""

    subject: str
    object: str
    fields: tuple[tuple[str, str], ...] = ()

    def render(self, template: str) -> str:
        return template.format(s=self.subject, o=self.object, **dict(self.fields))

    def prompt(self, template: str) -> tuple[str, str]:
        """``(prompt, answer)``: the template up to the object, and ``" " + object``."""
        head, _, _ = template.partition("{o}")
        if not head.endswith(" "):
            raise ValueError(f"template {template!r} must have a space before {{o}}")
        return head[:-1].format(s=self.subject, **dict(self.fields)), " " + self.object


@dataclass(frozen=True)
class Relation:
    name: str
    kind: str  # "factual" | "linguistic" | "arithmetic" | "category"
    facts: tuple[Fact, ...]
    train_templates: tuple[str, ...]
    heldout_templates: tuple[str, ...]

    def templates(self, split: str) -> tuple[str, ...]:
        return self.train_templates if split == "train" else self.heldout_templates


# "A dog is a mammal" and "A mammal is an animal" are phrased alike: (training, held-out).
CATEGORY_TEMPLATES = (
    ("{A} {s} is {a} {o}.", "The {s} is a kind of {o}.", "Every {s} is {a} {o}.", "The {s} counts as {a} {o}.",
     "We know that the {s} is {a} {o}."),
    ("We know the {s} is {a} {o}.", "Every {s} counts as {a} {o}."),
)


def _facts(pairs, **fields_of) -> tuple[Fact, ...]:
    return tuple(Fact(s, o, tuple((k, f(s, o)) for k, f in fields_of.items())) for s, o in pairs)


def _arith(names: tuple[str, ...], max_offset: int, unit: str) -> tuple[Fact, ...]:
    facts = []
    for i, name in enumerate(names):
        for k in range(1, max_offset + 1):
            word = kb.NUMBER_WORDS[k]
            units = unit if k == 1 else unit + "s"
            for direction, sign in (("after", 1), ("before", -1)):
                facts.append(Fact(name, names[(i + sign * k) % len(names)],
                                  (("n", word), ("N", word.capitalize()), ("unit", units), ("dir", direction))))
    return tuple(facts)


@lru_cache(maxsize=None)
def relations() -> dict[str, Relation]:
    """All relations of the world, by name."""
    C, P = kb.countries(), kb.people()
    ling = kb.linguistic()
    antonyms = [p for a, b in ling["antonym"] for p in ((a, b), (b, a))]
    cats = kb.categories()
    species = [(leaf, mid) for subs in cats.values() for mid, leaves in subs.items() for leaf in leaves]
    classes = [(mid, top) for top, subs in cats.items() for mid in subs]
    rels = [
        Relation("capital", "factual", _facts((c.name, c.capital) for c in C), (
            "The capital of {s} is {o}.",
            "{s}'s capital is {o}.",
            "The capital city of {s} is {o}.",
            "{s} has its capital in {o}.",
            "The government of {s} sits in {o}.",
        ), (
            "In {s}, the capital is {o}.",
            "The capital of the country {s} is {o}.",
        )),
        Relation("city_country", "factual", _facts((c.name, c.country) for c in kb.cities()), (
            "{s} is a city in {o}.",
            "{s} is located in {o}.",
            "The city of {s} is in {o}.",
            "{s} lies in the country of {o}.",
            "You can find {s} in {o}.",
        ), (
            "The city of {s} is located in {o}.",
            "{s} is a city located in {o}.",
        )),
        Relation("continent", "factual", _facts((c.name, c.continent) for c in C), (
            "{s} is a country in {o}.",
            "{s} is located on the continent of {o}.",
            "The continent of {s} is {o}.",
            "{s} is part of {o}.",
            "{s} belongs to the continent of {o}.",
        ), (
            "The country {s} is part of {o}.",
            "{s} lies on the continent of {o}.",
        )),
        Relation("language", "factual", _facts((c.name, c.language) for c in C), (
            "The language of {s} is {o}.",
            "People in {s} speak {o}.",
            "In {s}, people speak {o}.",
            "The main language spoken in {s} is {o}.",
            "{s}'s language is {o}.",
        ), (
            "The people of {s} speak {o}.",
            "The language spoken in {s} is {o}.",
        )),
        Relation("birth_year", "factual", _facts((p.name, str(p.birth_year)) for p in P), (
            "{s} was born in {o}.",
            "The year {s} was born was {o}.",
            "The birth year of {s} is {o}.",
            "{s}'s year of birth is {o}.",
            "{s} came into the world in {o}.",
        ), (
            "{s}'s birth year is {o}.",
            "The year of birth of {s} is {o}.",
        )),
        Relation("profession", "factual", _facts(((p.name, p.profession) for p in P), a=lambda s, o: _an(o)), (
            "{s} worked as {a} {o}.",
            "{s} was {a} {o}.",
            "The profession of {s} was {o}.",
            "{s} earned a living as {a} {o}.",
            "By profession, {s} was {a} {o}.",
        ), (
            "{s} made a living as {a} {o}.",
            "The profession of the person {s} was {o}.",
        )),
        Relation("home_city", "factual", _facts((p.name, p.home_city) for p in P), (
            "{s} lived in {o}.",
            "{s} made a home in {o}.",
            "The home of {s} was in {o}.",
            "{s}'s home city was {o}.",
            "{s} resided in {o}.",
        ), (
            "{s}'s home was in {o}.",
            "{s} lived in the city of {o}.",
        )),
        Relation("antonym", "linguistic", _facts(antonyms), (
            "The opposite of {s} is {o}.",
            "The antonym of {s} is {o}.",
            "The word {s} means the opposite of {o}.",
            "Something {s} is not {o}.",
            "The reverse of {s} is {o}.",
        ), (
            "The opposite of the word {s} is {o}.",
            "The antonym of the word {s} is {o}.",
        )),
        Relation("plural", "linguistic", _facts(ling["plural"]), (
            "The plural of {s} is {o}.",
            "One {s}, two {o}.",
            "The plural form of {s} is {o}.",
            "More than one {s} are called {o}.",
            "The word {s} in the plural is {o}.",
        ), (
            "The plural of the word {s} is {o}.",
            "One {s}, three {o}.",
        )),
        Relation("past_tense", "linguistic", _facts(ling["past_tense"]), (
            "The past tense of {s} is {o}.",
            "Today I {s}, yesterday I {o}.",
            "The past form of {s} is {o}.",
            "The verb {s} in the past tense is {o}.",
            "In the past tense, {s} becomes {o}.",
        ), (
            "The past tense of the verb {s} is {o}.",
            "The past tense of the word {s} is {o}.",
        )),
        Relation("day_arithmetic", "arithmetic", _arith(kb.DAYS, 6, "day"), (
            "{N} {unit} {dir} {s} is {o}.",
            "The day {n} {unit} {dir} {s} is {o}.",
            "Counting {n} {unit} {dir} {s} gives {o}.",
            "If today is {s}, the day {n} {unit} {dir} is {o}.",
            "Go {n} {unit} {dir} {s} and you reach {o}.",
        ), (
            "The day that is {n} {unit} {dir} {s} is {o}.",
            "If the day is {s}, the day {n} {unit} {dir} is {o}.",
        )),
        Relation("month_arithmetic", "arithmetic", _arith(kb.MONTHS, 4, "month"), (
            "{N} {unit} {dir} {s} is {o}.",
            "The month {n} {unit} {dir} {s} is {o}.",
            "Counting {n} {unit} {dir} {s} gives {o}.",
            "If this month is {s}, the month {n} {unit} {dir} is {o}.",
            "Go {n} {unit} {dir} {s} and you reach {o}.",
        ), (
            "The month that is {n} {unit} {dir} {s} is {o}.",
            "If the month is {s}, the month {n} {unit} {dir} is {o}.",
        )),
        Relation("category", "category", _facts(species, A=lambda s, o: _an(s).capitalize(), a=lambda s, o: _an(o)),
                 *CATEGORY_TEMPLATES),
        Relation("supercategory", "category", _facts(classes, A=lambda s, o: _an(s).capitalize(), a=lambda s, o: _an(o)),
                 *CATEGORY_TEMPLATES),
    ]
    return {r.name: r for r in rels}
