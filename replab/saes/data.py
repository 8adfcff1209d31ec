"""One view over SAE training/evaluation data: an in-memory ``[n, d]`` tensor or one hook of an ActivationStore.

Stores are never loaded whole: training reads shuffled batches through
``store.iter_batches``, evaluation and feature analysis read contiguous slices of the
memory-mapped ``store[hook]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from replab.errors import DataError, HookNameError, StoreError


def _finite(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=-1).nonzero()[0, 0])
        raise DataError(f"{what} contains NaN or infinite values (first in row {bad}); clean or re-capture the activations.")
    return x


def is_store(obj: Any) -> bool:
    """Duck-typed check for the ActivationStore interface."""
    return all(hasattr(obj, a) for a in ("hooks", "iter_batches", "metadata", "manifest"))


@dataclass
class Rows:
    """``n`` activation rows of width ``d`` from a tensor or a store hook.

    Attributes:
        tensor: the rows, when the data is in memory.
        store: the ActivationStore, when reading from disk.
        hook: the store hook (or the hook the tensor came from, if known).
    """

    tensor: torch.Tensor | None = None
    store: Any = None
    hook: str | None = None

    @property
    def n(self) -> int:
        return int(self.tensor.shape[0]) if self.tensor is not None else len(self.store)

    @property
    def d(self) -> int:
        return int(self.tensor.shape[1]) if self.tensor is not None else int(self.store.d(self.hook))

    @property
    def metadata(self):
        """The store's per-row metadata DataFrame, or ``None`` for tensors."""
        return None if self.store is None else self.store.metadata

    def describe(self) -> dict[str, Any]:
        """JSON-able description for run configs."""
        if self.store is None:
            return {"type": "tensor", "rows": self.n, "d": self.d, "hook": self.hook}
        return {"type": "store", "path": str(getattr(self.store, "path", "")), "hook": self.hook, "rows": self.n, "d": self.d}

    def recorded_mean_norm(self) -> float | None:
        """Mean L2 norm over every row of the store hook, recorded at capture (``store.stats(hook)``, no rescan).

        None for tensors and for stores without capture statistics (written by an older replab, or
        duck-typed stores without ``stats``): the caller estimates it from a sample instead. The statistics
        are of the rows as captured, before the store's cast (for an int8 store: not the dequantised rows,
        whose norms differ by at most ``sqrt(d) * max|x| / 254`` per row).
        """
        stats = getattr(self.store, "stats", None)
        if stats is None:
            return None
        try:
            return float(stats(self.hook)["mean_norm"])
        except StoreError:
            return None

    def _order(self, seed: int) -> np.ndarray:
        """The row permutation of an epoch fixed by ``seed`` (the store's ``iter_batches`` order for stores)."""
        if self.tensor is not None:
            return torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).numpy()
        return np.random.default_rng(seed).permutation(self.n)

    def _read(self, indices: np.ndarray) -> torch.Tensor:
        """float32 ``[len(indices), d]`` rows in the given order."""
        if self.tensor is not None:
            return self.tensor[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
        block = np.asarray(self.store[self.hook][np.asarray(indices, dtype=np.int64)], dtype=np.float32)
        return _finite(torch.from_numpy(block.reshape(len(indices), -1)), f"Store {self.hook!r} batch")

    def shuffled(self, batch_size: int, seed: int, part: tuple[int, int] = (0, 1)) -> Iterator[tuple[int, torch.Tensor]]:
        """One epoch of ``(global_rows, float32 [b, d])`` batches in an order fixed by ``seed``.

        With ``part=(r, parts)`` only slice ``r`` of each global batch is read (``np.array_split``, the
        split of ``torch.tensor_split``): a DDP rank reads its rows, never the whole batch.
        """
        order = self._order(seed)
        for lo in range(0, self.n, batch_size):
            batch = order[lo: lo + batch_size]
            yield len(batch), self._read(np.array_split(batch, part[1])[part[0]])

    def chunks(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first_row, float32 [b, d])`` in row order, over the first ``limit`` rows (all by default)."""
        end = self.n if limit is None else min(self.n, limit)
        for i in range(0, end, batch_size):
            j = min(i + batch_size, end)
            if self.tensor is not None:
                yield i, self.tensor[i:j]
            else:
                block = np.asarray(self.store[self.hook][i:j], dtype=np.float32)
                yield i, _finite(torch.from_numpy(block), f"Store {self.hook!r} rows {i}:{j}")

    def take(self, indices: np.ndarray) -> torch.Tensor:
        """float32 ``[len(indices), d]`` for sorted, unique row indices."""
        return self._read(indices)

    def sample(self, n_rows: int, seed: int, part: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Up to ``n_rows`` random rows (float32), e.g. to initialise ``b_dec``; with ``part``, slice
        ``part[0]`` of ``part[1]`` of them (the parts of all ranks make up the one-process sample)."""
        return self._read(np.array_split(self._order(seed)[:n_rows], part[1])[part[0]])


def rows(data: Any, hook: str | None = None, d_in: int | None = None) -> Rows:
    """Validate ``data`` (``[n, d]`` tensor/array or ActivationStore + hook) as SAE input.

    Args:
        data: a float tensor/array ``[n, d]`` or an ActivationStore.
        hook: the store hook to read; may be omitted when the store holds exactly one hook.
        d_in: the SAE's input dimension, checked against the data's width.

    Raises:
        HookNameError: the hook is not in the store (or is ambiguous).
        DataError: wrong shape, non-float, empty, NaN, or a width different from ``d_in``.
    """
    if is_store(data):
        hooks = list(data.hooks)
        if hook is None:
            if len(hooks) != 1:
                raise HookNameError(f"Store {getattr(data, 'path', '')} holds several hooks {hooks}; pass hook=... to pick one.")
            hook = hooks[0]
        if hook not in hooks:
            raise HookNameError(
                f"Hook {hook!r} is not in store {getattr(data, 'path', '')}; it holds {hooks}. Pass one of those, "
                "or capture this hook first."
            )
        out = Rows(store=data, hook=hook)
        what = f"Store hook {hook!r}"
    else:
        x = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
        if x.ndim != 2:
            raise DataError(f"SAE data must be a 2-D [n_rows, d] tensor, got shape {tuple(x.shape)}; flatten batch and position first.")
        if not x.is_floating_point():
            raise DataError(f"SAE data must be floating point, got {x.dtype}; pass activations, not token ids.")
        out = Rows(tensor=_finite(x.float(), "SAE data"), hook=hook)
        what = "SAE data"
    if out.n == 0:
        raise DataError(f"{what} has no rows; capture some activations first.")
    if d_in is not None and out.d != d_in:
        raise DataError(f"{what} has width {out.d} but the SAE expects d_in={d_in}; create the SAE with d_in={out.d}.")
    return out
