"""``ShardedArray``: one hook's rows across many shard files, read through memory maps."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class ShardedArray:
    """A read-only ``[n_rows, d]`` array over raw shard files, memory-mapped, decoded on read.

    Indexing (``a[i]``, ``a[i:j]``, ``a[idx_array]``, ``a[mask]``, ``a[rows, cols]``) and
    ``np.asarray(a)`` return ordinary numpy arrays holding only the rows asked for; nothing is
    read until then.

    Args:
        files: one file per shard, in row order.
        rows: rows in each file.
        width: values per row (``d``).
        storage: the on-disk numpy dtype.
        decode: ``(stored values (a fresh array), their scales or None) -> returned values`` (e.g. bf16 bits
            -> float32, int8 codes times their rows' scales -> float32).
        dtype: the dtype ``decode`` returns.
        scales: a ``[n_rows, 1]`` array over the same shards whose rows ``decode`` gets with each read
            (int8 stores' per-row scales), or None.
    """

    def __init__(self, files: Sequence[Path], rows: Sequence[int], width: int, storage: np.dtype,
                 decode: Callable[[np.ndarray, np.ndarray | None], np.ndarray], dtype: np.dtype,
                 scales: "ShardedArray | None" = None):
        self._files = list(files)
        self._offsets = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self._width = width
        self._storage = storage
        self._decode = decode
        self._scales = scales
        self._maps: dict[int, np.memmap] = {}
        self.dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._offsets[-1]), self._width

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self._files)})"

    def _map(self, k: int) -> np.memmap:
        if k not in self._maps:
            n = int(self._offsets[k + 1] - self._offsets[k])
            self._maps[k] = np.memmap(self._files[k], dtype=self._storage, mode="r", shape=(n, self._width))
        return self._maps[k]

    def _contiguous(self, start: int, stop: int) -> np.ndarray:
        """Decoded rows ``[start, stop)``."""
        scales = None if self._scales is None else self._scales._raw_contiguous(start, stop)
        return self._decode(self._raw_contiguous(start, stop), scales)

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """Decoded rows ``idx`` (any order, repeats allowed)."""
        scales = None if self._scales is None else self._scales._raw_gather(idx)
        return self._decode(self._raw_gather(idx), scales)

    def _raw_contiguous(self, start: int, stop: int) -> np.ndarray:
        parts = []
        k = bisect.bisect_right(self._offsets, start) - 1
        while start < stop:
            hi = min(stop, int(self._offsets[k + 1]))
            lo_local = start - int(self._offsets[k])
            parts.append(self._map(k)[lo_local: lo_local + hi - start])
            start, k = hi, k + 1
        if not parts:
            return np.empty((0, self._width), self._storage)
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])

    def _raw_gather(self, idx: np.ndarray) -> np.ndarray:
        raw = np.empty((len(idx), self._width), self._storage)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        shard = np.searchsorted(self._offsets, sorted_idx, side="right") - 1
        for group in np.split(np.arange(len(idx)), np.flatnonzero(np.diff(shard)) + 1):
            if len(group):
                k = int(shard[group[0]])
                raw[order[group]] = self._map(k)[sorted_idx[group] - self._offsets[k]]
        return raw

    def _rows(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {key} is out of range for {n} rows")
            return self._contiguous(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._contiguous(start, max(start, stop))
            return self._gather(np.arange(start, stop, step))
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index has shape {idx.shape}, expected ({n},)")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise IndexError("index rows with an int, a slice, a 1-D integer array or a boolean mask")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return self._gather(idx)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, *cols = key
            return self._rows(rows)[(Ellipsis, *cols)]
        return self._rows(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._contiguous(0, len(self))
        return out if dtype is None else out.astype(dtype)
