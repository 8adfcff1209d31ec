"""The world corpus: documents of fact sentences, biographies and reviews, drawn from a seed.

Sentences are separated by newlines, so every sentence starts with the same token it has
right after BOS: the canonical prompt ``The capital of France is`` is tokenised exactly as
each training occurrence of that phrasing. Document types are mixed so that every fact is
seen about equally often:

* **facts** -- four to six sentences, each a random fact of a non-person relation in a random
  training template;
* **biography** -- the three facts of one person (birth year, profession, home city), each in a
  random training template, in random order;
* **reviews** -- two sentiment reviews.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache

from replab.world.relations import Fact, Relation, relations
from replab.world.sentiment import make_review

PERSON_RELATIONS = ("birth_year", "profession", "home_city")
# Fractions of document types: a person fact and another fact are seen about equally often, and
# reviews are frequent enough for the model to learn to carry sentiment across a sentence.
MIX = {"facts": 0.33, "biography": 0.37, "reviews": 0.30}
# Calendar arithmetic binds three tokens (number, direction, day) to an answer: drawn 4x as often.
FACT_WEIGHT = {"arithmetic": 4.0}


@lru_cache(maxsize=None)
def _other_facts() -> tuple[tuple[tuple[Relation, Fact], ...], tuple[float, ...]]:
    pool = tuple((r, f) for r in relations().values() if r.name not in PERSON_RELATIONS for f in r.facts)
    return pool, tuple(FACT_WEIGHT.get(r.kind, 1.0) for r, _ in pool)


def _sentence(rng: random.Random, rel: Relation, fact: Fact) -> str:
    return fact.render(rng.choice(rel.train_templates))


def make_document(rng: random.Random) -> str:
    """One training document (sentences joined by newlines)."""
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if kind == "facts":
        pool, weights = _other_facts()
        sentences = [_sentence(rng, *fact) for fact in rng.choices(pool, weights=weights, k=rng.randint(4, 6))]
    elif kind == "biography":
        rels = relations()
        i = rng.randrange(len(rels["birth_year"].facts))
        sentences = [_sentence(rng, rels[name], rels[name].facts[i]) for name in PERSON_RELATIONS]
        rng.shuffle(sentences)
    else:
        sentences = [make_review(rng).text for _ in range(2)]
    return "\n".join(sentences)


def documents(n: int, seed: int = 0) -> Iterator[str]:
    """The first ``n`` documents of the corpus drawn with ``seed`` (same seed, same documents)."""
    rng = random.Random(seed)
    for _ in range(n):
        yield make_document(rng)
