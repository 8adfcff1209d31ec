"""Hooked models: loading, the hook-name catalogue, tokenisation helpers and interventions."""

from replab.models.hooks import hook_layer, hook_names, resolve_hooks
from replab.models.identity import model_id, weights_hash
from replab.models.interventions import ablate_direction, add_direction, intervene, patch_activations, splice
from replab.models.loading import WORLD_CHECKPOINT, load_model
from replab.models.tokens import TokenBatch, pad_token_ids, subject_last_index, tokenize

__all__ = [
    "load_model",
    "WORLD_CHECKPOINT",
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
