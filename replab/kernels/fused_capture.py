"""Fused capture: gather selected ``(item, position)`` rows, cast to the store dtype, accumulate statistics.

``gather_cast(x [batch, seq, d], item [rows], pos [rows], dtype)`` returns the rows cast to ``float32`` /
``float16`` / ``bfloat16``, or quantised to ``int8`` with one symmetric float32 scale per row, and adds to a
``CaptureStats`` staging buffer the per-dimension sum and sum of squares and the sum of row L2 norms of the
rows (computed from the float32 values before the cast). In torch this is four passes over the rows
(index, cast, square-sum, norm); the Triton kernel reads each selected row once.

int8 (symmetric, per row): ``scale = max|x| / 127`` (1 for an all-zero row), ``q = floor(x / scale + 1/2)``
clipped to ``[-127, 127]``; dequantised ``q * scale`` is within ``scale / 2 = max|x| / 254`` of ``x`` per entry
(plus float32 rounding), i.e. a relative error of at most 0.4% of the row's largest entry.
"""

from __future__ import annotations

import torch

from replab.dtypes import STORE_DTYPES
from replab.errors import DataError
from replab.kernels.dispatch import use_triton


class CaptureStats:
    """Running per-dimension sum and sum of squares and sum of row norms of one hook's captured rows.

    Each batch adds into a staging buffer ``[2 d + 1]`` on the rows' device (float32 by default: the
    kernel's atomics target; the torch reference also accumulates in float64 when asked), which is then
    folded into float64 totals so millions of rows keep full precision.
    """

    def __init__(self, d: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.d = d
        self.staging = torch.zeros(2 * d + 1, dtype=dtype, device=device)
        self.total = torch.zeros(2 * d + 1, dtype=torch.float64, device=device)
        self.rows = 0

    def fold(self, rows: int) -> None:
        """Add the staging buffer (one batch) into the totals and clear it."""
        self.total += self.staging
        self.staging.zero_()
        self.rows += rows

    def summary(self) -> dict[str, object]:
        """``{"rows", "mean" [d], "var" [d] (population), "mean_norm"}`` as plain Python numbers."""
        t = self.total.cpu()
        n = max(self.rows, 1)
        mean = t[:self.d] / n
        var = (t[self.d:2 * self.d] / n - mean ** 2).clamp_min(0)
        return {"rows": self.rows, "mean": mean.tolist(), "var": var.tolist(), "mean_norm": float(t[-1] / n)}


def _check(x: torch.Tensor, item: torch.Tensor, pos: torch.Tensor, dtype: str) -> None:
    if dtype not in STORE_DTYPES:
        raise DataError(f"Unsupported capture dtype {dtype!r}; use one of {', '.join(STORE_DTYPES)}.")
    if x.ndim != 3:
        raise DataError(f"gather_cast needs a hook output [batch, seq, d]; got shape {tuple(x.shape)}. "
                        "Flatten trailing dimensions (e.g. heads) first.")
    if item.shape != pos.shape or item.ndim != 1:
        raise DataError(f"item and pos must be matching [rows] tensors; got {tuple(item.shape)} and {tuple(pos.shape)}.")


def quantise_int8(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[rows, d]`` float -> (``[rows, d]`` int8, ``[rows]`` float32 scales), symmetric per row."""
    x = rows.float()
    amax = x.abs().amax(1) if x.shape[1] else torch.zeros(x.shape[0], device=x.device)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = torch.floor(x / scale[:, None] + 0.5).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantise_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 rows and their scales -> float32 ``[rows, d]``."""
    return q.float() * scale.float()[:, None]


def gather_cast_reference(x: torch.Tensor, item: torch.Tensor, pos: torch.Tensor, dtype: str = "float32",
                          stats: CaptureStats | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The torch reference (and CPU path) of ``gather_cast``: same contract, separate ops."""
    rows = x[item, pos].float()
    if stats is not None:
        d, acc = rows.shape[1], rows.to(stats.staging.dtype)
        stats.staging[:d] += acc.sum(0)
        stats.staging[d:2 * d] += (acc * acc).sum(0)
        stats.staging[-1] += acc.norm(dim=1).sum()
    if dtype == "int8":
        return quantise_int8(rows)
    return rows.to(STORE_DTYPES[dtype]), None


def gather_cast(x: torch.Tensor, item: torch.Tensor, pos: torch.Tensor, dtype: str = "float32",
                stats: CaptureStats | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gather ``x[item, pos]``, cast to ``dtype``, add the rows' statistics to ``stats``.

    Args:
        x: ``[batch, seq, d]`` hook output, any strides, float32/16/bf16.
        item, pos: ``[rows]`` long batch row and position of each selected row (may be empty).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"int8"``.
        stats: accumulates into ``stats.staging`` (call ``stats.fold(rows)`` after the batch); None skips.

    Returns:
        ``([rows, d] values in dtype, [rows] float32 scales for int8 else None)``.
    """
    _check(x, item, pos, dtype)
    if use_triton(x, item, pos) and item.numel():
        from replab.kernels.fused_capture_triton import gather_cast_triton
        return gather_cast_triton(x, item, pos, STORE_DTYPES[dtype], stats)
    return gather_cast_reference(x, item, pos, dtype, stats)
