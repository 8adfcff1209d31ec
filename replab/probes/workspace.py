"""One reused buffer for the large temporaries of consecutive probe fits (a sweep's hooks).

Why: on the CPU glibc maps every block of ``MMAP_MAX`` or more afresh and unmaps it when it is
freed, so each new tensor that large costs a page fault per 4 KiB the first time it is written:
centring one 20,000 x 768 hook into a new tensor took 49 ms, into a reused one 7.4 ms (a 12-hook
sweep: 2.8 -> 2.4 s task-only, 3.9 -> 3.5 s with its baselines). Inside ``reuse()``, ``scratch``
hands out views of one buffer per dtype that lives until the block ends. Smaller tensors come from
the allocator as usual: glibc recycles those without faults, and a buffer held across calls there
made the world store's sweeps slower.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch

MMAP_MAX = 32 * 2**20
"""glibc's largest dynamic mmap threshold on 64-bit systems: blocks at least this large are always mapped afresh."""

_buffers: contextvars.ContextVar[dict[torch.dtype, torch.Tensor] | None] = contextvars.ContextVar(
    "replab_probe_buffers", default=None)


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """Within the block, ``scratch`` reuses one CPU buffer per dtype (freed when the block ends)."""
    token = _buffers.set({})
    try:
        yield
    finally:
        _buffers.reset(token)


def scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape``. Inside ``reuse()``, on the CPU and from ``MMAP_MAX`` bytes up,
    it is a view of the block's buffer for ``dtype``, so it is valid only until the next ``scratch`` call
    with that dtype: one temporary per dtype at a time (e.g. a fit's centred activations)."""
    numel = math.prod(shape)
    buffers = _buffers.get()
    if buffers is None or torch.device(device).type != "cpu" or numel * dtype.itemsize < MMAP_MAX:
        return torch.empty(shape, dtype=dtype, device=device)
    buf = buffers.get(dtype)
    if buf is None or buf.numel() < numel:
        with torch.inference_mode(False):  # an ordinary tensor: usable in place inside inference mode and out of it
            buf = buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)
