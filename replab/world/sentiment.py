"""Synthetic reviews with a sentiment label, neutral fillers, names and commas.

A review states an opinion through one adjective and ends with a continuation of the same
polarity (``In short, it was great.``), so the model must carry the adjective's sentiment to
the end of the sentence: the setting of Tigges et al.'s sentiment direction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from replab.world import kb

TRAIN_TEMPLATES = (
    "{F}, {name} said the {item} was {adj}. In short, it was {cont}.",
    "{name} thought the {item} was {adj}, {f}. In short, it was {cont}.",
    "The {item} was {adj}, {f}, said {name}. Overall, it was {cont}.",
    "{F}, the {item} was {adj}. {name} found it {cont}.",
    "{name} said the {item} was {adj}. {F}, it was {cont}.",
)
HELDOUT_TEMPLATES = (
    "{name} found the {item} {adj}, {f}. In short, it was {cont}.",
    "{F}, {name} thought the {item} was {adj}. Overall, it was {cont}.",
)
LABELS = ("negative", "positive")
ANSWER_TOKENS = {"positive": " great", "negative": " terrible"}


@dataclass(frozen=True)
class Review:
    text: str  # the full review, continuation included
    prompt: str  # everything before the continuation
    label: str  # "positive" | "negative"
    adjective: str


def make_review(rng: random.Random, split: str = "train", label: str | None = None) -> Review:
    """Draw one review (``label`` random when not given) from the ``split`` templates."""
    v = kb.sentiment_vocab()
    label = label or rng.choice(LABELS)
    adj = rng.choice(v["positive_adjectives"] if label == "positive" else v["negative_adjectives"])
    cont = rng.choice(v["positive_continuations"] if label == "positive" else v["negative_continuations"])
    filler = rng.choice(v["fillers"])
    template = rng.choice(TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES)
    fields = dict(F=filler[0].upper() + filler[1:], f=filler, name=rng.choice(kb.first_names()),
                  item=rng.choice(v["items"]), adj=adj)
    head = template.partition(" {cont}")[0]
    prompt = head.format(**fields)
    return Review(text=template.format(cont=cont, **fields), prompt=prompt, label=label, adjective=adj)
