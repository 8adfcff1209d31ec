"""Hooked models: loading, the hook-name catalogue, the forward primitive, tokenisation and interventions.

Names are imported on first use (PEP 562), so a torch-free submodule such as
``replab.models.catalogue`` can be imported by the CLI without importing torch.
"""

from replab.lazy import lazy_exports

_EXPORTS = {
    "run_batches": "replab.models.forward",
    "ForwardBatch": "replab.models.forward",
    "hook_widths": "replab.models.forward",
    "jacobian": "replab.models.forward",
    "hook_names": "replab.models.hooks",
    "resolve_hooks": "replab.models.hooks",
    "hook_layer": "replab.models.hooks",
    "model_id": "replab.identity",
    "weights_hash": "replab.identity",
    "intervene": "replab.models.interventions",
    "ablate_direction": "replab.models.interventions",
    "add_direction": "replab.models.interventions",
    "patch_activations": "replab.models.interventions",
    "splice": "replab.models.interventions",
    "load_model": "replab.models.loading",
    "Positions": "replab.models.positions",
    "as_source": "replab.models.sources",
    "tokenize": "replab.models.tokens",
    "pad_token_ids": "replab.models.tokens",
    "TokenBatch": "replab.models.tokens",
    "subject_last_index": "replab.models.tokens",
}
__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
