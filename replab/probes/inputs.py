"""A sweep's inputs read and checked against a store, torch-free: ``replab probe`` refuses a bad hook,
target or ``cv`` before it imports torch, with the same messages as ``sweep``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from replab.errors import DataError, HookNameError
from replab.models.patterns import expand_patterns


@dataclass(frozen=True)
class Data:
    """What a sweep reads of its store (or ``{hook: array}`` mapping): hooks, arrays, metadata rows."""

    hooks: list[str]
    arrays: Any  # hook -> [n, d]
    metadata: pd.DataFrame
    manifest: dict
    n: int


def as_data(store) -> Data:
    """A store or ``{hook: [n, d] array}`` mapping as ``Data`` (a mapping has no metadata columns)."""
    if isinstance(store, Mapping):
        if not store:
            raise DataError("No activations given; pass a store or a {hook: array} mapping.")
        sizes = {h: len(a) for h, a in store.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"Arrays have different row counts {sizes}; every hook needs the same rows.")
        n = next(iter(sizes.values()))
        return Data(list(store), store, pd.DataFrame(index=range(n)), {}, n)
    meta = store.metadata.reset_index(drop=True)
    return Data(list(store.hooks), store, meta, dict(store.manifest or {}), len(store))


def column(data: Data, spec, what: str) -> np.ndarray | None:
    """``[n]`` values of ``spec``: a metadata column name or one value per row (``None`` stays ``None``)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in data.metadata.columns:
            cols = ", ".join(map(str, data.metadata.columns)) or "none"
            raise DataError(
                f"{what}={spec!r} is not a metadata column of the store (columns: {cols}); "
                f"name one of those or pass an array with one value per row."
            )
        col = data.metadata[spec]
        if col.isna().any():
            raise DataError(f"Metadata column {spec!r} ({what}) is missing for {int(col.isna().sum())} rows.")
        return col.to_numpy()
    arr = np.asarray(spec.detach().cpu().numpy() if hasattr(spec, "detach") else spec)  # a torch tensor
    if arr.shape != (data.n,):
        raise DataError(f"{what} has shape {arr.shape} but the store has {data.n} rows; pass one value per row.")
    return arr


def select_hooks(available: list[str], hooks) -> list[str]:
    """The store hooks named by ``hooks`` (names or globs; ``None``: all), each pattern matching something."""
    if hooks is None:
        return list(available)

    def missing(pat: str) -> list[str]:
        raise HookNameError(f"Hook {pat!r} matches nothing in the store; it holds: {', '.join(available)}.")

    return expand_patterns([hooks] if isinstance(hooks, str) else list(hooks), available, missing)


def check_class_counts(y: np.ndarray, cv: int, classes: np.ndarray | None = None) -> None:
    """Raise before any fitting when a class has fewer rows than stratified ``cv``-fold CV needs.

    Args:
        y: ``[n]`` class indices (or labels).
        cv: number of folds.
        classes: names of the classes ``y`` indexes, for the message.

    Raises:
        DataError: naming every class's count and the largest ``cv`` that works.
    """
    uniq, counts = np.unique(y, return_counts=True)
    if counts.min() >= cv:
        return
    names = uniq if classes is None else np.asarray(classes)[uniq]
    listing = ", ".join(f"{c!r}: {k}" for c, k in zip(names.tolist(), counts.tolist()))
    fix = (f"lower cv to {counts.min()} or fewer" if counts.min() >= 2 else
           "add rows of the rare class or drop it (a class needs at least 2 rows)")
    raise DataError(f"Stratified {cv}-fold CV needs at least {cv} rows per class, but the class counts are "
                    f"{{{listing}}}; {fix}.")


def check_inputs(store, hooks=None, target="label", cv: int = 5, *, classification: bool = True) -> None:
    """Check what ``sweep`` would check before fitting: the hooks exist, the target column is there
    and complete, and (for classifiers) every class has at least ``cv`` rows.

    Raises:
        HookNameError / DataError: the same errors, with the same messages, as ``sweep``.
    """
    data = as_data(store)
    select_hooks(data.hooks, hooks)
    y = column(data, target, "target")
    if classification and y is not None:
        check_class_counts(y, cv)
