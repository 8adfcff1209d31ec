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

from replab.lenses.attention import AttentionLens, AttentionLensConfig
from replab.lenses.base import Lens, final_hook, load, resid_hook
from replab.lenses.evaluate import evaluate, head_facts, head_topk, prompt_table
from replab.lenses.logit import LogitLens, logit_lens
from replab.lenses.shortcut import LinearShortcut
from replab.lenses.train import lens_loss, train
from replab.lenses.tuned import TunedLens, TunedLensConfig

__all__ = ["Lens", "LogitLens", "TunedLens", "TunedLensConfig", "LinearShortcut", "AttentionLens",
           "AttentionLensConfig", "logit_lens", "train", "evaluate", "head_topk", "head_facts", "prompt_table", "load",
           "lens_loss", "resid_hook", "final_hook"]
