"""Rows of hook activations for lens training: from an activation store (cached) or live through ``run_batches``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from replab.errors import StoreError


def is_store(data) -> bool:
    from replab.activations import ActivationStore

    return isinstance(data, ActivationStore)


def row_batches(model, data, hooks: Sequence[str], batch_size: int, *, positions: str = "all", seed: int = 0,
                forward_batch: int = 16, context: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Endless ``{hook: [batch_size, ...] float32}`` batches, rows aligned across hooks.

    A store is sampled uniformly with replacement-free shuffles (no model forward); live data is
    cycled through ``run_batches`` epoch after epoch, ``forward_batch`` items per forward pass.
    """
    device = next(model.parameters()).device
    if is_store(data):
        missing = [h for h in hooks if h not in data.hooks]
        if missing:
            raise StoreError(f"The store {data.path} lacks hooks {missing}; capture them, e.g. "
                             f"`replab capture --hooks 'blocks.0.hook_resid_pre,blocks.*.hook_resid_post' ...`.")
        rng = np.random.default_rng(seed)
        n = len(data)
        while True:
            order = rng.permutation(n)
            for lo in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
                idx = np.sort(order[lo: lo + batch_size])
                yield {h: torch.from_numpy(np.asarray(data[h][idx])).float().to(device) for h in hooks}
    from replab.models import run_batches

    buffer: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    have = 0
    while True:
        seen = 0
        for fb in run_batches(model, data, list(hooks), positions=positions, batch_size=forward_batch,
                              context=context):
            for h in hooks:
                buffer[h].append(fb.acts[h].float())
            have += len(fb.item)
            seen += len(fb.item)
            while have >= batch_size:
                cat = {h: torch.cat(buffer[h]) for h in hooks}
                yield {h: x[:batch_size] for h, x in cat.items()}
                buffer = {h: [x[batch_size:]] for h, x in cat.items()}
                have -= batch_size
        if seen == 0:
            raise StoreError("The data gave no rows for the lens; pass a non-empty corpus or prompt set.")
