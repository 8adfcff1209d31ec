"""Linear relations: LRE (Hernandez et al.) and LRC (Chanin et al.), measured against the world's truth.

::

    from replab.relations import world, fit_lre, faithfulness, causality
    rel = world("capital")
    lre = fit_lre(model, rel, subject_layer=0)
    faithfulness(lre, model, rel).value, causality(lre, model, rel, rank=8).value
"""

from replab.lazy import lazy_exports

_EXPORTS = {
    "Relation": "replab.relations.data",
    "Sample": "replab.relations.data",
    "load": "replab.relations.data",
    "save": "replab.relations.data",
    "world": "replab.relations.data",
    "world_names": "replab.relations.data",
    "LRE": "replab.relations.lre",
    "METHODS": "replab.relations.lre",
    "fit_lre": "replab.relations.lre",
    "load_lre": "replab.relations.lre",
    "split": "replab.relations.lre",
    "build_prompts": "replab.relations.states",
    "layer_hook": "replab.relations.states",
    "Score": "replab.relations.evaluate",
    "faithfulness": "replab.relations.evaluate",
    "causality": "replab.relations.evaluate",
    "sweep": "replab.relations.evaluate",
    "test_set": "replab.relations.evaluate",
    "Concepts": "replab.relations.concepts",
    "fit_concepts": "replab.relations.concepts",
    "evaluate_concepts": "replab.relations.concepts",
    "BASELINES": "replab.relations.concepts",
    "RelationConfig": "replab.relations.config",
}
__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
