"""2-D PCA of one hook's activations, on a bounded sample of rows so pages stay fast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replab.errors import DataError


@dataclass(frozen=True)
class Projection:
    """Attributes:
        rows: ``[m]`` store rows projected (sorted; all rows when the store has at most ``max_rows``).
        coords: ``[m, 2]`` coordinates on the first two principal components.
        explained: fraction of variance explained by PC1 and PC2.
    """

    rows: np.ndarray
    coords: np.ndarray
    explained: tuple[float, float]


def pca_2d(activations, max_rows: int = 5000, seed: int = 0) -> Projection:
    """Project ``activations`` ``[n, d]`` (array-like, e.g. a memory-mapped store column) onto 2 PCs.

    Raises:
        DataError: fewer than 2 rows, fewer than 2 dimensions, or non-finite values.
    """
    from sklearn.decomposition import PCA

    n = len(activations)
    rows = np.arange(n) if n <= max_rows else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    X = np.asarray(activations[rows], dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
        raise DataError(f"PCA needs at least 2 rows and 2 dimensions; got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise DataError("The activations contain NaN or infinite values; re-capture the store.")
    pca = PCA(n_components=2, random_state=seed).fit(X)
    ratio = pca.explained_variance_ratio_
    return Projection(rows=rows, coords=pca.transform(X), explained=(float(ratio[0]), float(ratio[1])))
