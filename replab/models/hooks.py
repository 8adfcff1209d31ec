"""The hook-name catalogue: one familiar TransformerLens name per tensor, with glob filtering.

A ``TransformerBridge`` exposes each tensor under several names (``blocks.0.hook_out`` is
``blocks.0.hook_resid_post`` is ``blocks.0.ln1.hook_in`` of the next sub-module...). The
catalogue runs one tiny forward, groups the names whose cached tensors share storage, and
keeps the HookedTransformer-style names (``blocks.{l}.hook_resid_post``) of each group, or
the first canonical name where a group has none.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Iterable

import torch

from replab.models.patterns import match_hooks

# Names HookedTransformer users know; kept whenever the bridge exposes them.
_LEGACY = re.compile(
    r"^(hook_embed|hook_pos_embed|ln_final\.hook_(scale|normalized)"
    r"|blocks\.\d+\.(hook_resid_(pre|mid|post)|hook_attn_out|hook_mlp_out"
    r"|attn\.hook_(q|k|v|z|attn_scores|pattern|result)|mlp\.hook_(pre|post)"
    r"|ln[12]\.hook_(scale|normalized)))$"
)
_LAYER = re.compile(r"^blocks\.(\d+)\.")
_CATALOGUE: "weakref.WeakKeyDictionary[torch.nn.Module, list[str]]" = weakref.WeakKeyDictionary()


def _catalogue(model) -> list[str]:
    if model in _CATALOGUE:
        return _CATALOGUE[model]
    device = next(model.parameters()).device
    tokens = torch.zeros((1, 2), dtype=torch.long, device=device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    groups: dict[tuple, list[str]] = {}
    for name, value in cache.items():
        if not torch.is_floating_point(value):  # token ids entering the embedding are not activations
            continue
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), tuple(value.stride()))
        groups.setdefault(key, []).append(name)
    keep: set[str] = set()
    for names in groups.values():
        legacy = [n for n in names if _LEGACY.match(n)]
        keep.update(legacy if legacy else [min(names, key=lambda n: (not n.endswith("hook_out"), n.count("."), n))])
    # the cache is filled in the order hooks fire, so this is forward order
    _CATALOGUE[model] = names = [n for n in cache.keys() if n in keep]
    return names


def hook_names(model, pattern: str | None = None) -> list[str]:
    """List the hook names a user can capture, one per tensor, in forward order.

    Args:
        model: a hooked model from ``replab.load_model``.
        pattern: optional glob such as ``"blocks.*.hook_resid_post"``.

    Returns:
        Hook names in the order they fire in the forward pass.
    """
    names = _catalogue(model)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else list(names)


def resolve_hooks(model, hooks: str | Iterable[str]) -> list[str]:
    """Expand names and glob patterns against ``hook_names(model)``.

    Raises:
        HookNameError: a name or pattern matched nothing; the message lists close matches.
    """
    return match_hooks(hooks, _catalogue(model), set(model.hook_dict) if hasattr(model, "hook_dict") else set())


def hook_site(name: str) -> str:
    """The hook with its block index replaced by ``*`` (``blocks.3.hook_resid_post`` -> ``blocks.*.hook_resid_post``)."""
    return _LAYER.sub("blocks.*.", name)


def hook_layer(name: str) -> int | None:
    """The block index a hook belongs to (``blocks.3.hook_resid_post`` -> 3), ``None`` outside blocks."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None
