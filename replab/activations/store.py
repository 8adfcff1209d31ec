"""``ActivationStore``: read a store written by ``replab.capture`` (memory-mapped, checked on open)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replab.activations import shards
from replab.activations.arrays import ShardedArray
from replab.errors import HookNameError, StoreError
from replab.fileio import read_json

if TYPE_CHECKING:
    import torch


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Recompute every checksum of the store at ``path``.

    Returns:
        ``{"rows", "shards", "files", "complete"}`` when every listed file is intact
        (``complete`` is False for a capture that has not finished yet).

    Raises:
        StoreError: naming each missing, truncated or corrupt file.
    """
    root = Path(path)
    manifest = shards.read_manifest(root)
    bad = shards.problems(root, manifest, checksums=True)
    if bad:
        raise StoreError(f"Store {root} is damaged:\n  " + "\n  ".join(bad) +
                         "\nRe-run the capture with resume=False (--no-resume) to rebuild it.")
    n_files = len(manifest["shards"]) * len(shards.column_layout(manifest)) + bool(manifest.get("prompts"))
    return {"rows": manifest["n_rows"], "shards": len(manifest["shards"]), "files": n_files,
            "complete": bool(manifest["complete"])}


class ActivationStore:
    """Activations on disk: ``store[hook]`` is a memory-mapped ``[n_rows, d]`` array.

    Open one with ``ActivationStore.open(path)``; every hook has the same rows, described
    row by row by ``store.metadata``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ActivationStore":
        """Open a complete store, checking that every shard is present with the right size.

        Raises:
            StoreError: no store there, the capture did not finish, or a shard is missing or truncated.
        """
        root = Path(path)
        manifest = shards.read_manifest(root)
        if not manifest["complete"]:
            raise StoreError(
                f"Store {root} is partial ({manifest['n_rows']} rows committed): its capture did not finish. "
                "Run the same capture again to resume it."
            )
        bad = shards.problems(root, manifest, checksums=False)
        if bad:
            raise StoreError(f"Store {root} is damaged:\n  " + "\n  ".join(bad) +
                             "\nRe-run the capture with resume=False (--no-resume) to rebuild it.")
        return cls(root, manifest)

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, rows={len(self)}, hooks={len(self.hooks)}, "
                f"dtype={self.manifest['dtype']})")

    def __len__(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def hooks(self) -> list[str]:
        return list(self.manifest["hooks"])

    @property
    def dtype(self) -> str:
        """The stored dtype (``float32``, ``float16``, ``bfloat16`` or ``int8``; reads return float32 for all but
        ``float16``)."""
        return self.manifest["dtype"]

    def d(self, hook: str) -> int:
        """Values per row of ``hook``."""
        self._check_hook(hook)
        return int(self.manifest["dims"][hook])

    def stats(self, hook: str) -> dict[str, Any]:
        """Statistics of ``hook``'s rows as captured (float32, before the cast or int8 quantisation to the store
        dtype), recorded at capture time (no rescan).

        Returns:
            ``{"rows": n, "mean": [d] float64 array, "var": [d] population variance, "mean_norm": float}``
            (mean L2 norm of a row), e.g. for SAE input scaling (sqrt(d) / mean_norm) or probe standardisation.

        Raises:
            StoreError: the store was written before capture recorded statistics (re-capture it).
        """
        self._check_hook(hook)
        entry = self.manifest.get("stats", {}).get(hook)
        if entry is None:
            raise StoreError(f"Store {self.path} has no capture statistics (written by an older replab); "
                             "re-run the capture with resume=False to record them.")
        return {"rows": entry["rows"], "mean": np.asarray(entry["mean"]), "var": np.asarray(entry["var"]),
                "mean_norm": entry["mean_norm"]}

    def check_model(self, model, fix: str) -> None:
        """Refuse a ``model`` whose weights are not the ones this store was captured from (its manifest's
        ``model_hash``): anything combining the two (CE metrics, lenses decoded through the model's head,
        causal checks) would silently mix two models.

        Args:
            fix: what the user should do instead, appended to the message.

        Raises:
            StoreError: the weights differ.
        """
        from replab.identity import model_id, weights_hash

        expected = self.manifest.get("model_hash")
        if expected and weights_hash(model) != expected:
            raise StoreError(f"Model {model_id(model)!r} has weights {weights_hash(model)} but store {self.path} was "
                             f"captured from {self.manifest.get('model')!r} (weights {expected}); {fix}.")

    def _check_hook(self, hook: str) -> None:
        if hook not in self.manifest["dims"]:
            raise HookNameError(f"Hook {hook!r} is not in store {self.path}; it holds {', '.join(self.hooks)}. "
                                 "Pass one of those, or capture this hook first.")

    def _column(self, column: str) -> ShardedArray:
        """One file stem's rows: hooks decoded to their values (int8 codes times their scales), the rest raw."""
        layout = shards.column_layout(self.manifest)
        storage, width = layout[column]
        files = [shards.column_file(self.path, k, column) for k in range(len(self.manifest["shards"]))]
        rows = [s["rows"] for s in self.manifest["shards"]]
        if column not in self.manifest["dims"]:
            return ShardedArray(files, rows, width, storage, lambda raw, _: raw, storage)
        scales, dtype = shards.scale_column(column), self.dtype
        return ShardedArray(files, rows, width, storage, lambda raw, scale: shards.decode(raw, dtype, scale),
                            shards.value_dtype(self.dtype), scales=self._column(scales) if scales in layout else None)

    def __getitem__(self, hook: str) -> ShardedArray:
        """``[n_rows, d]`` memory-mapped activations of ``hook`` (bf16 read back as float32, int8 dequantised
        to float32: ``code * row scale``, within ``max|row| / 254`` of the captured value per entry)."""
        self._check_hook(hook)
        return self._column(hook)

    @cached_property
    def metadata(self):
        """One row per stored activation: ``prompt_index``, ``position``, ``token_id``, plus the
        prompt set's ``text``/``label``/``target``/``subject``/``answer`` columns when it had them."""
        import pandas as pd

        df = pd.DataFrame({c: np.asarray(self._column(f"meta.{c}"))[:, 0] for c in shards.META_COLUMNS})
        if self.manifest.get("prompts"):
            prompts = pd.DataFrame(read_json(self.path / shards.PROMPTS, "Store prompts", error=StoreError,
                                             fix="re-run the capture with resume=False (--no-resume)"))
            df = pd.concat([df, prompts.iloc[df["prompt_index"].to_numpy()].reset_index(drop=True)], axis=1)
        return df

    def token_contexts(self, limit: int | None = None) -> list[list[int]]:
        """Token ids of each captured prompt or context, rebuilt from the metadata.

        Needs a store captured with ``positions="all"`` (otherwise the contexts are incomplete).
        Used to score a model on exactly the tokens a corpus store holds (e.g. SAE CE metrics).
        """
        if self.manifest.get("positions") != "all":
            raise StoreError(
                f"Store {self.path} holds positions {self.manifest.get('positions')!r}, not every token, so its "
                "contexts cannot be rebuilt; pass the prompts explicitly."
            )
        meta = self.metadata[["prompt_index", "position", "token_id"]]
        contexts = []
        for _, group in meta.groupby("prompt_index", sort=True):
            contexts.append(group.sort_values("position")["token_id"].astype(int).tolist())
            if limit is not None and len(contexts) >= limit:
                break
        return contexts

    def iter_batches(self, hook: str, batch_size: int, shuffle: bool = True, seed: int = 0) -> Iterator[torch.Tensor]:
        """One epoch of float32 ``[b, d]`` tensors (the last may be smaller); a seed fixes the order."""
        import torch  # here: opening a store imports no torch

        rows = self[hook]
        n = len(rows)
        order = np.random.default_rng(seed).permutation(n) if shuffle else None
        for lo in range(0, n, batch_size):
            chunk = rows[order[lo: lo + batch_size]] if order is not None else rows[lo: lo + batch_size]
            yield torch.from_numpy(chunk).float()

    def verify(self) -> dict[str, Any]:
        """Recompute all checksums (see ``replab.activations.verify``)."""
        return verify(self.path)
