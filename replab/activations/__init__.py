"""Activation stores: stream a model's activations to disk in checksummed, resumable shards.

    store = replab.capture(model, prompts, "blocks.*.hook_resid_post", positions="last", out="runs/x/acts")
    store = replab.activations.ActivationStore.open("runs/x/acts")
    X = store["blocks.3.hook_resid_post"]      # memory-mapped [n_rows, d]
    store.metadata                             # prompt_index, position, token_id, label, ...
"""

import sys
import types
from importlib import import_module
from typing import Any

# imported on first use, so ``replab capture`` can check its arguments before torch loads
_LAZY = {
    "capture": "replab.activations.capture",
    "CaptureConfig": "replab.activations.config",
    "ActivationStore": "replab.activations.store",
    "ShardedArray": "replab.activations.arrays",
    "verify": "replab.activations.store",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'replab.activations' has no attribute {name!r}")



class _Package(types.ModuleType):
    """Keeps ``replab.activations.capture`` the function when the submodule of that name is imported later."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "capture" and isinstance(value, types.ModuleType):
            value = value.capture
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
