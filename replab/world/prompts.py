"""World prompt sets for ``replab.datasets.load("world:...")``: every relation and attribute.

* ``world:<relation>`` (``capital``, ``city_country``, ``birth_year``, ``antonym``, ...): one prompt
  per (fact, template) of the split; ``subject`` is the fact's subject, ``answer`` and ``label``
  its object.
* ``world:sentiment``: reviews cut before their continuation; ``label`` positive/negative,
  ``subject`` the opinion adjective (the word type a control task keys on).
  ``world:birth_year`` also carries the year as a numeric ``target``.
* ``world:city_latitude``, ``world:city_longitude``: numeric ``target`` per city, one prompt per
  city (templates cycled), ``label`` the city's continent.
* ``world:corpus``: the training corpus (first 2,000 documents) as a ``TextCorpus``.
"""

from __future__ import annotations

import random

from replab.datasets.promptset import PromptSet, TextCorpus
from replab.errors import DataError
from replab.world import kb
from replab.world.corpus import documents
from replab.world.relations import relations
from replab.world.sentiment import ANSWER_TOKENS, make_review

N_SENTIMENT = 1000
N_CORPUS_DOCS = 2000
CORPUS_SEED = 12345  # not the training seed: held-out draws of the same distribution


def _relation_prompts(name: str, split: str) -> PromptSet:
    rel = relations()[name]
    texts, answers, subjects = [], [], []
    for template in rel.templates(split):
        for fact in rel.facts:
            prompt, answer = fact.prompt(template)
            texts.append(prompt)
            answers.append(answer)
            subjects.append(fact.subject)
    # birth years are also numbers: a ridge probe reads ``target``, a classifier ``label``
    targets = [float(a) for a in answers] if name == "birth_year" else None
    return PromptSet(texts=texts, labels=[a.strip() for a in answers], targets=targets, subjects=subjects,
                     answers=answers,
                     name=f"world:{name}/{split}", meta={"source": "world", "relation": name, "split": split,
                                                         "kind": rel.kind})


def _sentiment(split: str) -> PromptSet:
    rng = random.Random(0 if split == "train" else 1)
    reviews = [make_review(rng, split, label=("positive", "negative")[i % 2]) for i in range(N_SENTIMENT)]
    return PromptSet(
        texts=[r.prompt for r in reviews], labels=[r.label for r in reviews],
        subjects=[r.adjective for r in reviews], answers=[ANSWER_TOKENS[r.label] for r in reviews],
        name=f"world:sentiment/{split}",
        meta={"source": "world", "relation": "sentiment", "split": split,
              "answer_tokens": [ANSWER_TOKENS["positive"], ANSWER_TOKENS["negative"]],
              "label_names": ["positive", "negative"]},
    )


def _numeric(name: str, split: str) -> PromptSet:
    rel = relations()["city_country"]
    continent = {c.name: c.continent for c in kb.countries()}
    rows = [(c.name, c.lat if name == "city_latitude" else c.lon, continent[c.country]) for c in kb.cities()]
    templates = rel.templates(split)
    texts, subjects, targets, labels = [], [], [], []
    facts = {f.subject: f for f in rel.facts}
    for i, (subject, value, label) in enumerate(rows):
        prompt, _ = facts[subject].prompt(templates[i % len(templates)])
        texts.append(prompt)
        subjects.append(subject)
        targets.append(float(value))
        labels.append(label)
    return PromptSet(texts=texts, targets=targets, labels=labels, subjects=subjects, name=f"world:{name}/{split}",
                     meta={"source": "world", "attribute": name, "split": split, "relation": rel.name})


NUMERIC = ("city_latitude", "city_longitude")


def world_prompts(name: str, split: str = "train") -> PromptSet:
    """A world prompt set by name (see the module docstring)."""
    if name == "sentiment":
        return _sentiment(split)
    if name in NUMERIC:
        return _numeric(name, split)
    if name in relations():
        return _relation_prompts(name, split)
    known = ["sentiment", *relations(), *NUMERIC, "corpus"]
    raise DataError(f"Unknown world prompt set {name!r}. Known: {', '.join(known)}.")


def world_corpus(n_documents: int = N_CORPUS_DOCS) -> TextCorpus:
    """Documents from the world corpus distribution (a seed disjoint from training's)."""
    return TextCorpus(tuple(documents(n_documents, seed=CORPUS_SEED)), name=f"world:corpus[{n_documents}]")


def load_spec(name: str, split: str = "train") -> PromptSet | TextCorpus:
    """What ``replab.datasets.load(f"world:{name}")`` returns: ``corpus`` or a prompt set of ``split``."""
    if name == "corpus":
        return world_corpus()
    if split not in ("train", "heldout"):
        raise DataError(f"Unknown split {split!r} for 'world:{name}'; use 'train' or 'heldout'.")
    return world_prompts(name, split=split)
