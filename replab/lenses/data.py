"""Rows of hook activations for lens training, addressed by step: from an activation store (cached) or live.

Step ``k`` of training reads the global batch ``k`` (``batch_size`` rows); under DDP rank ``r`` of
``R`` reads only its contiguous slice of it (``numpy.array_split`` sizes). Because a batch is a
function of the step alone, a resumed run reads exactly what an uninterrupted one would, and ``R``
ranks together read exactly one process's batch.

- Store: epoch ``e`` is a permutation of the rows seeded by ``(seed, e)``; an epoch has
  ``len(store) // batch_size`` batches (the remainder is dropped; a store smaller than one batch
  gives one batch of all its rows). Only the slice's rows are read, never the whole store.
- Live: the data is tokenised once (no forward); its rows (every real token, or the last one) form
  a stream in data order, cycled epoch after epoch. A batch forwards only the items holding its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from replab.errors import DataError, StoreError

LIVE_POSITIONS = ("all", "last")


def is_store(data) -> bool:
    from replab.activations import ActivationStore

    return isinstance(data, ActivationStore)


def split(n: int, parts: int, part: int) -> tuple[int, int]:
    """``[lo, hi)`` of part ``part`` when ``n`` rows are cut into ``parts`` contiguous slices (array_split sizes)."""
    base, extra = divmod(n, parts)
    lo = part * base + min(part, extra)
    return lo, lo + base + (part < extra)


class StoreRows:
    """Batches of a store's rows, shuffled per epoch; reads only the rows asked for."""

    def __init__(self, store, hooks: Sequence[str], batch_size: int, *, seed: int, device):
        missing = [h for h in hooks if h not in store.hooks]
        if missing:
            raise StoreError(f"The store {store.path} lacks hooks {missing} that this lens reads; capture them "
                             f"too: `replab capture --hooks {' '.join(hooks)} ...`.")
        self.store, self.hooks, self.batch_size, self.seed, self.device = store, list(hooks), batch_size, seed, device
        self.n = len(store)
        if self.n == 0:
            raise StoreError(f"The store {store.path} holds no rows; capture some first.")
        self.per_epoch = max(1, self.n // batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def describe(self) -> dict[str, Any]:
        return {"store": str(self.store.path), "rows": self.n, "batch_size": self.batch_size, "seed": self.seed}

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(self.n))
        return self._order[1]

    def batch(self, step: int, part: int = 0, parts: int = 1) -> dict[str, torch.Tensor]:
        """``{hook: [rows, ...] float32}``: slice ``part`` of ``parts`` of global batch ``step``."""
        epoch, j = divmod(step, self.per_epoch)
        rows = self._permutation(epoch)[j * self.batch_size: (j + 1) * self.batch_size]
        lo, hi = split(len(rows), parts, part)
        idx = np.sort(rows[lo:hi])
        return {h: torch.from_numpy(np.asarray(self.store[h][idx])).float().to(self.device) for h in self.hooks}


class LiveRows:
    """Batches of rows computed by forward passes over just the items that hold them."""

    def __init__(self, model, data, hooks: Sequence[str], batch_size: int, *, positions: str = "all",
                 context: int | None = None, forward_batch: int = 16):
        from replab.models.sources import as_source

        if positions not in LIVE_POSITIONS:
            raise DataError(f"Live lens training reads positions {LIVE_POSITIONS}; got {positions!r}. "
                            "Capture a store with those positions and train from it instead.")
        source = as_source(data, model, context=context)
        self.model, self.hooks, self.batch_size, self.positions = model, list(hooks), batch_size, positions
        self.forward_batch = forward_batch
        self.described = source.describe()
        self.items = [t[: int(n)].tolist() for b in source.batches(model, 0, 256)
                      for t, n in zip(b.tokens.tokens, b.tokens.lengths)]
        counts = np.array([len(t) if positions == "all" else 1 for t in self.items], dtype=np.int64)
        if counts.sum() == 0:
            raise StoreError("The data gave no rows for the lens; pass a non-empty corpus or prompt set.")
        self.ends = np.cumsum(counts)
        self.total = int(self.ends[-1])
        self._tail: tuple[int, dict[str, torch.Tensor]] | None = None  # the last item forwarded, reused next step

    def describe(self) -> dict[str, Any]:
        return {**self.described, "positions": self.positions, "rows": self.total, "batch_size": self.batch_size}

    def _item_rows(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """Rows ``[lo, hi)`` of one epoch."""
        from replab.models import run_batches

        first, last = (int(i) for i in np.searchsorted(self.ends, [lo, hi - 1], side="right"))
        offset = int(self.ends[first - 1]) if first else 0
        pieces: list[dict[str, torch.Tensor]] = []
        start = first
        if self._tail is not None and self._tail[0] == first:
            pieces.append(self._tail[1])
            start += 1
        if start <= last:
            for fb in run_batches(self.model, self.items[start: last + 1], self.hooks, positions=self.positions,
                                  batch_size=self.forward_batch):
                pieces.append({h: fb.acts[h].float() for h in self.hooks})
            n_last = int(self.ends[last] - (self.ends[last - 1] if last else 0))
            self._tail = (last, {h: pieces[-1][h][-n_last:] for h in self.hooks})  # the last item ends the last batch
        rows = {h: torch.cat([p[h] for p in pieces]) for h in self.hooks}
        return {h: x[lo - offset: hi - offset] for h, x in rows.items()}

    def batch(self, step: int, part: int = 0, parts: int = 1) -> dict[str, torch.Tensor]:
        """``{hook: [rows, ...] float32}``: slice ``part`` of ``parts`` of global batch ``step``."""
        lo, hi = split(self.batch_size, parts, part)
        a, b = step * self.batch_size + lo, step * self.batch_size + hi
        pieces = []
        while a < b:
            at = a % self.total
            take = min(b - a, self.total - at)
            pieces.append(self._item_rows(at, at + take))
            a += take
        return {h: torch.cat([p[h] for p in pieces]) for h in self.hooks}


def row_stream(model, data, hooks: Sequence[str], batch_size: int, *, positions: str = "all", seed: int = 0,
               context: int | None = None, forward_batch: int = 16) -> StoreRows | LiveRows:
    """The batches of ``data`` for a lens reading ``hooks``: ``StoreRows`` for a store, else ``LiveRows``."""
    if is_store(data):
        return StoreRows(data, hooks, batch_size, seed=seed, device=next(model.parameters()).device)
    return LiveRows(model, data, hooks, batch_size, positions=positions, context=context, forward_batch=forward_batch)
