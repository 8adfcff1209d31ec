"""Activation stores: stream a model's activations to disk in checksummed, resumable shards.

    store = replab.capture(model, prompts, "blocks.*.hook_resid_post", positions="last", out="runs/x/acts")
    store = replab.activations.ActivationStore.open("runs/x/acts")
    X = store["blocks.3.hook_resid_post"]      # memory-mapped [n_rows, d]
    store.metadata                             # prompt_index, position, token_id, label, ...
"""

from replab.lazy import lazy_exports

# imported on first use, so ``replab capture`` can check its arguments before torch loads
_EXPORTS = {
    "capture": "replab.activations.capture",
    "CaptureConfig": "replab.activations.config",
    "ActivationStore": "replab.activations.store",
    "ShardedArray": "replab.activations.arrays",
    "verify": "replab.activations.store",
}
__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
