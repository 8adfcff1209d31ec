"""The world: a knowledge base with machine-readable ground truth, its corpus, and the model trained on it.

``replab.load_model("world")`` loads the shipped checkpoint (``replab/world/checkpoint``);
``replab world train`` reproduces it from a seed and ``replab world eval`` re-measures the card.
"""

from importlib import import_module
from pathlib import Path
from typing import Any

from replab import plugins
from replab.world import kb
from replab.world.corpus import documents
from replab.world.prompts import load_spec, world_corpus, world_prompts
from replab.world.relations import Fact, Relation, relations

WORLD_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"
plugins.register_source("world", load_spec)
plugins.register_checkpoint("world", WORLD_CHECKPOINT)

# torch-backed parts, imported on first use so the knowledge base and prompt sets load without torch
_LAZY = {
    "WorldTrainConfig": "replab.world.train",
    "train_world": "replab.world.train",
    "evaluate_world": "replab.world.evaluate",
    "completion_correct": "replab.world.evaluate",
    "CANONICAL": "replab.world.evaluate",
    "CARD_DIR": "replab.world.evaluate",
}

__all__ = [
    "kb", "WORLD_CHECKPOINT", "relations", "Relation", "Fact", "documents", "world_prompts", "world_corpus", *_LAZY, "load_card",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'replab.world' has no attribute {name!r}")


def load_card() -> dict:
    """The shipped world card (JSON) with per-relation accuracies."""
    import json

    from replab.world.evaluate import CARD_DIR

    return json.loads((CARD_DIR / "world_card.json").read_text(encoding="utf-8"))
