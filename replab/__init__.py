"""replab: an interpretability and representation-analysis workbench.

The spine is ``model -> capture -> store -> method -> run directory -> app``::

    import replab
    model = replab.load_model("world")            # the shipped world model, offline
    replab.hook_names(model, "blocks.*.hook_resid_post")
    prompts = replab.datasets.load("world:sentiment")
    store = replab.capture(model, prompts, "blocks.*.hook_resid_post", positions="last", out="runs/x/acts")
"""

from importlib import import_module
from importlib.util import find_spec
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "replab.models",
    "hook_names": "replab.models",
    "capture": "replab.activations",
    "ActivationStore": "replab.activations",
}
_SUBMODULES = {"models", "world", "datasets", "activations", "probes", "saes", "lenses", "relations", "kernels",
               "distributed", "runs", "fileio", "viz"}

__all__ = ["__version__", *_LAZY, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    """Import heavy submodules (torch, transformer-lens) on first use, not on ``import replab``."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES or (not name.startswith("_") and find_spec(f"replab.{name}") is not None):
        return import_module(f"replab.{name}")
    raise AttributeError(f"module 'replab' has no attribute {name!r}")
