"""The world's knowledge base: machine-readable ground truth for everything the world model knows.

Everything is plain JSON under ``replab/world/data/`` (countries, real cities with real
coordinates, synthetic people, linguistic pairs, a category hierarchy, sentiment vocabulary).
People are generated once from a seed by ``make_people`` and shipped as ``people.json`` so the
ground truth never depends on code drifting.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    continent: str
    language: str


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Person:
    name: str
    birth_year: int
    profession: str
    home_city: str


def _load(name: str):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def countries() -> tuple[Country, ...]:
    """Countries (all G20 members among them) with capital, continent and language."""
    return tuple(Country(**c) for c in _load("countries.json"))


@lru_cache(maxsize=None)
def cities() -> tuple[City, ...]:
    """Real cities with their country and real latitude/longitude (degrees)."""
    return tuple(City(**c) for c in _load("cities.json"))


@lru_cache(maxsize=None)
def people() -> tuple[Person, ...]:
    """Synthetic people with birth year (1500-2000), profession and home city."""
    return tuple(Person(**p) for p in _load("people.json"))


@lru_cache(maxsize=None)
def linguistic() -> dict[str, tuple[tuple[str, str], ...]]:
    """``{"antonym": ((hot, cold), ...), "plural": ..., "past_tense": ...}``; antonyms listed once per pair."""
    return {k: tuple(tuple(p) for p in v) for k, v in _load("linguistic.json").items()}


@lru_cache(maxsize=None)
def categories() -> dict[str, dict[str, tuple[str, ...]]]:
    """Two-level hierarchy ``{"animal": {"mammal": ("dog", ...), ...}, ...}``."""
    return {top: {mid: tuple(leaves) for mid, leaves in subs.items()} for top, subs in _load("categories.json").items()}


@lru_cache(maxsize=None)
def sentiment_vocab() -> dict[str, tuple[str, ...]]:
    """Vocabulary for synthetic reviews: adjectives, items, neutral fillers, continuations."""
    return {k: tuple(v) for k, v in _load("sentiment.json").items()}


@lru_cache(maxsize=None)
def first_names() -> tuple[str, ...]:
    return tuple(_load("names.json")["first_names"])


def make_people(n: int = 320, seed: int = 0) -> list[Person]:
    """Draw ``n`` unique synthetic people (used once to write ``people.json``)."""
    rng = random.Random(seed)
    names = _load("names.json")
    professions = _load("professions.json")
    city_names = [c.name for c in cities()]
    pairs = [(f, l) for f in names["first_names"] for l in names["last_names"]]
    rng.shuffle(pairs)
    out, used_first, used_last = [], {}, {}
    for f, l in pairs:
        # spread first and last names so no single token identifies too many people
        if used_first.get(f, 0) >= 6 or used_last.get(l, 0) >= 6:
            continue
        used_first[f] = used_first.get(f, 0) + 1
        used_last[l] = used_last.get(l, 0) + 1
        out.append(Person(f"{f} {l}", rng.randint(1500, 2000), rng.choice(professions), rng.choice(city_names)))
        if len(out) == n:
            break
    return out
