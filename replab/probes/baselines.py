"""Honest baselines: Hewitt & Liang control tasks and shuffled labels.

A control task gives every word type (here: every subject, else every token id) one fixed
random label drawn from the task's label distribution. A probe that scores well on it is
memorising types, not reading the property, so ``selectivity = task - control`` is what the
representation contributes. Shuffled labels break every link between rows and labels.
"""

from __future__ import annotations

import numpy as np

from replab.errors import DataError


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    a, b = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def control_labels(y: np.ndarray, types: np.ndarray, seed: int = 0) -> np.ndarray:
    """One random label per type, drawn from the empirical distribution of ``y``.

    Args:
        y: ``[n]`` task labels (or numeric targets).
        types: ``[n]`` the word type of each row (subject string, token id, ...).
        seed: fixes the draw.

    Returns:
        ``[n]`` control labels, constant within each type.
    """
    y, types = np.asarray(y), np.asarray(types)
    if y.shape != types.shape:
        raise DataError(f"Control task: {len(types)} types for {len(y)} labels; pass one type per row.")
    uniq, inverse = np.unique(types.astype(str) if types.dtype == object else types, return_inverse=True)
    drawn = _rngs(seed)[0].choice(y, size=len(uniq), replace=True)
    return drawn[inverse.reshape(-1)]


def shuffled_labels(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``y`` (same label counts, no link to the rows)."""
    return _rngs(seed)[1].permutation(np.asarray(y))
