"""Activation stores: stream a model's activations to disk in checksummed, resumable shards.

    store = replab.capture(model, prompts, "blocks.*.hook_resid_post", positions="last", out="runs/x/acts")
    store = replab.activations.ActivationStore.open("runs/x/acts")
    X = store["blocks.3.hook_resid_post"]      # memory-mapped [n_rows, d]
    store.metadata                             # prompt_index, position, token_id, label, ...
"""

from replab.activations.arrays import ShardedArray
from replab.activations.capture import capture
from replab.activations.store import ActivationStore, verify

__all__ = ["capture", "ActivationStore", "ShardedArray", "verify"]
