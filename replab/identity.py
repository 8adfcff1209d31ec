"""Model identity for manifests and run directories: a name and a hash of the weights."""

from __future__ import annotations

import hashlib
import weakref

import torch

_HASHES: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def model_id(model) -> str:
    """The name the model was loaded under (``"world"``, ``"gpt2"``, a path), else its class name."""
    return getattr(model, "replab_name", None) or type(model).__name__


def weights_hash(model) -> str:
    """SHA-256 (first 16 hex digits) over parameter names, shapes, dtypes and bytes, cached per model.

    Two stores or probes made on models with the same hash saw the same weights.
    """
    if model in _HASHES:
        return _HASHES[model]
    h = hashlib.sha256()
    seen: set[int] = set()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if id(p) in seen:  # tied weights appear under several names
            continue
        seen.add(id(p))
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy())  # raw bytes, any dtype (bf16 included)
    _HASHES[model] = digest = h.hexdigest()[:16]
    return digest


def describe(model) -> dict[str, str]:
    """The model description run directories record: ``{"id": model_id, "weights_sha256": weights_hash}``."""
    return {"id": model_id(model), "weights_sha256": weights_hash(model)}
