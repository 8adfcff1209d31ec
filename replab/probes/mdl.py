"""Minimum description length probing with the online code (Voita & Titov 2020).

Shuffle the rows once; cut them at 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50 and
100 % of the data. The first block is sent with the uniform code (``n_1 log2 K`` bits); each
later block costs the cross-entropy, in bits, of a probe trained on every earlier row.
``compression = N log2 K / codelength``. All blocks' probes are fitted in one joint pass
(``fit_logistic``). Cut points round down to whole rows (at least one); duplicates are merged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from replab.errors import DataError
from replab.probes.base import as_features
from replab.probes.logistic import logistic_logits, fit_logistic

VOITA_FRACTIONS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25.0, 50.0, 100.0)


def block_ends(n: int, fractions=VOITA_FRACTIONS) -> list[int]:
    """Row counts at each cut point (percent of ``n``), strictly increasing, ending at ``n``."""
    if sorted(fractions) != list(fractions) or fractions[-1] != 100.0:
        raise DataError(f"MDL fractions must increase and end at 100 (percent); got {list(fractions)}.")
    ends = sorted({max(1, int(n * f / 100.0)) for f in fractions})
    if len(ends) < 2:
        raise DataError(f"Only {n} rows: too few for an online code; MDL needs at least 2 rows.")
    return ends


def online_codelength(X, y, *, classes=None, fractions=VOITA_FRACTIONS, seed: int = 0, C: float = 1.0,
                      tol: float = 1e-4, max_iter: int = 1000) -> dict[str, Any]:
    """Online codelength of labels ``y [n]`` given activations ``X [n, d]`` (logistic probe).

    Args:
        X: activations; y: class labels.
        classes: the label set K is counted over (default: the classes in ``y``); pass the
            task's classes when coding a control task so both use the same uniform code.
        fractions: cut points in percent.
        seed: the row shuffle.
        C, tol, max_iter: the logistic probe's settings.

    Returns:
        ``codelength`` (bits), ``uniform_codelength`` (``N log2 K``), ``compression``, ``n``,
        ``n_classes`` and ``blocks`` (start, end, bits of each transmitted block).
    """
    Xt = as_features(X)
    n = Xt.shape[0]
    y = np.asarray(y)
    if len(y) != n:
        raise DataError(f"y has {len(y)} entries but X has {n} rows.")
    classes = np.unique(y) if classes is None else np.asarray(classes)
    if len(classes) < 2:
        raise DataError("MDL needs at least two classes; the labels have one.")
    idx = np.searchsorted(classes, y)
    if (idx >= len(classes)).any() or not np.array_equal(classes[np.minimum(idx, len(classes) - 1)], y):
        raise DataError("Some labels are not in `classes`.")
    K = len(classes)
    ends = block_ends(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # position of each row in the shuffled transmission order
    rank_t = torch.from_numpy(rank)
    P = len(ends) - 1
    train = torch.stack([rank_t < ends[i] for i in range(P)], 1)
    labels = torch.from_numpy(idx).long()[:, None].expand(n, P).contiguous()
    coef, intercept = fit_logistic(Xt, labels, train, K, C=C, tol=tol, max_iter=max_iter)
    Z = logistic_logits(Xt, coef, intercept).to(torch.float64).cpu()
    if K == 2:
        logp = torch.nn.functional.logsigmoid(torch.where(labels[..., None] == 1, Z, -Z))[..., 0]
    else:
        logp = torch.log_softmax(Z, -1).gather(-1, labels[..., None])[..., 0]
    bits = (-logp / math.log(2)).numpy()  # [n, P]
    blocks = [{"start": 0, "end": ends[0], "bits": ends[0] * math.log2(K)}]
    for i in range(P):
        rows = (rank >= ends[i]) & (rank < ends[i + 1])
        blocks.append({"start": ends[i], "end": ends[i + 1], "bits": float(bits[rows, i].sum())})
    codelength = float(sum(b["bits"] for b in blocks))
    uniform = n * math.log2(K)
    return {"codelength": codelength, "uniform_codelength": uniform, "compression": uniform / codelength,
            "n": n, "n_classes": K, "blocks": blocks}
