"""Linear relations: LRE (Hernandez et al.) and LRC (Chanin et al.), measured against the world's truth.

::

    from replab.relations import world, fit_lre, faithfulness, causality
    rel = world("capital")
    lre = fit_lre(model, rel, subject_layer=0)
    faithfulness(lre, model, rel).value, causality(lre, model, rel, rank=8).value
"""

from replab.relations.data import Relation, Sample, load, save, world, world_names
from replab.relations.lre import LRE, METHODS, fit_lre, load_lre, split
from replab.relations.evaluate import Score, causality, faithfulness, sweep, test_set
from replab.relations.concepts import BASELINES, Concepts, evaluate_concepts, fit_concepts
from replab.relations.states import build_prompts, layer_hook

__all__ = ["Relation", "Sample", "load", "save", "world", "world_names", "LRE", "METHODS", "fit_lre", "load_lre",
           "split", "build_prompts", "layer_hook", "Score", "faithfulness", "causality", "sweep", "test_set",
           "Concepts", "fit_concepts", "evaluate_concepts", "BASELINES"]
