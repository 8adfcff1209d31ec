"""Helpers for the probe tests (no tests here): an in-memory store with the ActivationStore
contract, and a small capture built on ``run_with_cache`` for the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch


class FakeStore:
    """The ActivationStore contract (hooks, store[hook], d, len, metadata, manifest, iter_batches, path)."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: pd.DataFrame, manifest: dict | None = None,
                 path: str | Path = "fake-store"):
        self._arrays = {h: np.asarray(a, dtype=np.float32) for h, a in arrays.items()}
        self.hooks = list(arrays)
        self.metadata = metadata.reset_index(drop=True)
        self.manifest = {"model": "fake", "positions": "last", "hooks": self.hooks,
                         "dims": {h: a.shape[1] for h, a in self._arrays.items()}, **(manifest or {})}
        self.path = Path(path)

    def __getitem__(self, hook: str) -> np.ndarray:
        return self._arrays[hook]

    def __len__(self) -> int:
        return len(self.metadata)

    def d(self, hook: str) -> int:
        return self._arrays[hook].shape[1]

    def iter_batches(self, hook: str, batch_size: int, shuffle: bool = True, seed: int = 0):
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for s in range(0, n, batch_size):
            yield torch.from_numpy(self._arrays[hook][order[s:s + batch_size]])


def planted_store(n: int = 400, d: int = 24, n_layers: int = 3, n_subjects: int = 40, seed: int = 0) -> FakeStore:
    """Rows whose label is planted along one direction, more strongly in later layers."""
    rng = np.random.default_rng(seed)
    subjects = np.array([f"s{i}" for i in rng.integers(0, n_subjects, n)])
    label = np.where(rng.random(n) < 0.5, "positive", "negative")
    sign = np.where(label == "positive", 1.0, -1.0)
    direction = rng.normal(size=d)
    arrays = {}
    for layer in range(n_layers):
        scale = rng.uniform(0.5, 4.0, d)
        X = rng.normal(size=(n, d)) * scale + rng.normal(size=d) * 3 + 0.6 * (layer + 1) * sign[:, None] * direction
        arrays[f"blocks.{layer}.hook_resid_post"] = X.astype(np.float32)
    target = arrays[f"blocks.{n_layers - 1}.hook_resid_post"] @ rng.normal(size=d) + rng.normal(size=n)
    meta = pd.DataFrame({"prompt_index": np.arange(n), "position": np.full(n, 5), "token_id": rng.integers(0, 7, n),
                         "label": label, "subject": subjects, "target": target})
    return FakeStore(arrays, meta, {"model": "planted", "model_hash": "0123abcd"})


def tiny_capture(model, prompts, hooks="blocks.*.hook_resid_post", *, positions="last", out=None) -> FakeStore:
    """Capture ``prompts`` at their last (or subject's last) token, like ``replab.capture``."""
    import replab
    from replab.models import subject_last_index, tokenize, weights_hash

    names = replab.models.resolve_hooks(model, hooks)
    batch = tokenize(model, list(prompts.texts))
    if positions == "last":
        pos = batch.lengths - 1
    else:
        pos = torch.tensor([subject_last_index(model, t, s) for t, s in zip(prompts.texts, prompts.subjects)])
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
    rows = torch.arange(len(prompts))
    arrays = {h: cache[h][rows, pos].numpy() for h in names}
    meta = pd.DataFrame(prompts.records())
    meta.insert(0, "token_id", batch.tokens[rows, pos].numpy())
    meta.insert(0, "position", pos.numpy())
    meta.insert(0, "prompt_index", rows.numpy())
    return FakeStore(arrays, meta, {"model": getattr(model, "replab_name", "tiny"), "model_hash": weights_hash(model),
                                    "positions": positions, "source": {**prompts.describe()}}, path=out or "tiny-store")
