"""Hooked models: loading, the hook-name catalogue, the forward primitive, tokenisation and interventions."""

from replab.models.forward import ForwardBatch, hook_widths, jacobian, run_batches
from replab.models.hooks import hook_layer, hook_names, resolve_hooks
from replab.identity import model_id, weights_hash
from replab.models.interventions import ablate_direction, add_direction, intervene, patch_activations, splice
from replab.models.loading import load_model
from replab.models.positions import Positions
from replab.models.sources import as_source
from replab.models.tokens import TokenBatch, pad_token_ids, subject_last_index, tokenize

__all__ = [
    "load_model",
    "run_batches",
    "jacobian",
    "ForwardBatch",
    "hook_widths",
    "Positions",
    "as_source",
    "hook_names",
    "resolve_hooks",
    "hook_layer",
    "model_id",
    "weights_hash",
    "tokenize",
    "pad_token_ids",
    "TokenBatch",
    "subject_last_index",
    "intervene",
    "ablate_direction",
    "add_direction",
    "patch_activations",
    "splice",
]
