"""The world: a knowledge base with machine-readable ground truth, its corpus, and the model trained on it.

``replab.load_model("world")`` loads the shipped checkpoint (``replab/world/checkpoint``);
``replab world train`` reproduces it from a seed and ``replab world eval`` re-measures the card.
"""

from replab.world import kb
from replab.world.corpus import documents
from replab.world.evaluate import CANONICAL, CARD_DIR, completion_correct, evaluate_world
from replab.world.prompts import world_corpus, world_prompts
from replab.world.relations import Fact, Relation, relations
from replab.world.train import WorldTrainConfig, train_world

__all__ = [
    "kb", "relations", "Relation", "Fact", "documents", "world_prompts", "world_corpus",
    "WorldTrainConfig", "train_world", "evaluate_world", "completion_correct", "CANONICAL", "CARD_DIR",
    "load_card",
]


def load_card() -> dict:
    """The shipped world card (JSON) with per-relation accuracies."""
    import json

    return json.loads((CARD_DIR / "world_card.json").read_text())
