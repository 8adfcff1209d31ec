"""Lenses: read what each layer (or each attention head) is about to predict.

::

    from replab.lenses import LogitLens, TunedLens, train, evaluate, load
    lens = train("tuned", model, "world:corpus", steps=250, batch_size=1024, out="runs/world-tuned")
    evaluate(lens, model, held_out)          # per layer: kl, ce, top1, entropy, depth_fraction
    logits = lens(h, layer)                  # layer 0 = embeddings, i = output of block i-1
    head_facts(attention_lens, model, replab.datasets.load("world:capital"))  # which heads carry capitals

Every lens decodes through the model's own final norm and unembedding; ``replab.lenses.load(dir, model)``
reads replab's files and tuned-lens 0.2's ``config.json`` + ``params.pt``.
"""

from replab.lazy import lazy_exports

_EXPORTS = {
    "Lens": "replab.lenses.base",
    "LogitLens": "replab.lenses.logit",
    "TunedLens": "replab.lenses.tuned",
    "TunedLensConfig": "replab.lenses.tuned",
    "LinearShortcut": "replab.lenses.shortcut",
    "AttentionLens": "replab.lenses.attention",
    "AttentionLensConfig": "replab.lenses.attention",
    "logit_lens": "replab.lenses.logit",
    "train": "replab.lenses.train",
    "LensTrainConfig": "replab.lenses.config",
    "evaluate": "replab.lenses.evaluate",
    "head_topk": "replab.lenses.evaluate",
    "prompt_table": "replab.lenses.evaluate",
    "head_facts": "replab.lenses.evaluate",
    "load": "replab.lenses.base",
    "lens_loss": "replab.lenses.train",
    "resid_hook": "replab.lenses.base",
    "final_hook": "replab.lenses.base",
}
__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
