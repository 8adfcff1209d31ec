"""How many CPU threads a probe batch gets: one, unless it is very large.

Why: the batched probe fits and the data preparation around them are many small torch ops,
each an OpenMP parallel region whose threads spin and then sleep at its closing barrier. On a
small store (1,000 x 256) those barriers cost more than the arithmetic, and when other processes
hold the cores a descheduled worker stalls every region: with two busy processes on a 2-core
machine, a two-thread logistic solve ran 7x slower (and burnt 3x the CPU time) than a
one-thread one, and the world store's task-only sweep took 50-86 ms instead of 19-24 ms. One
thread solves even a 20,000 x 768 x 16-problem batch faster than scikit-learn's loop, so threads
are only added for much larger batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

MACS_PER_THREAD = 2**27
"""Multiply-adds per function evaluation of a logistic batch that earn one more CPU thread."""


def logistic_macs(features: int, problems: int, n_classes: int) -> int:
    """Multiply-adds of one evaluation of ``problems`` logistic problems on ``features`` activation
    values (``layers x rows x width``), ``n_classes`` classes (one logit when binary)."""
    return features * problems * (1 if n_classes <= 2 else n_classes)


@contextlib.contextmanager
def solver_threads(macs: int, device: torch.device | str | None) -> Iterator[int]:
    """Run CPU work with one torch thread per ``MACS_PER_THREAD`` of ``macs``.

    Never above ``torch.get_num_threads()``; the caller's setting is restored afterwards. Work on
    a CUDA device is left alone.

    Args:
        macs: the size of the work (``logistic_macs`` of the batch).
        device: where it runs (``None``: the CPU).

    Yields:
        the number of threads used.
    """
    before = torch.get_num_threads()
    if device is not None and torch.device(device).type != "cpu":
        yield before
        return
    want = max(1, min(before, macs // MACS_PER_THREAD))
    if want == before:
        yield before
        return
    torch.set_num_threads(want)
    try:
        yield want
    finally:
        torch.set_num_threads(before)
