"""Triton ``gather_cast``: one program per block of selected rows, each row read once.

A program loads ``BR`` selected rows whole (``BD`` = next power of two >= d, masked), writes them cast (or
int8-quantised with per-row scales), and adds the block's per-dimension sums, sums of squares and row norms
to the staging buffer with atomics (float32; exact in the interpreter, order-dependent on GPUs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gather_cast_kernel(x_ptr, item_ptr, pos_ptr, out_ptr, scale_ptr, stats_ptr, rows, d, s_b, s_s, s_d,
                        INT8: tl.constexpr, STATS: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = r < rows
    cols = tl.arange(0, BD)
    cmask = cols < d
    it = tl.load(item_ptr + r, mask=rmask, other=0)
    ps = tl.load(pos_ptr + r, mask=rmask, other=0)
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(x_ptr + it[:, None] * s_b + ps[:, None] * s_s + cols[None, :] * s_d, mask=mask,
                other=0.0).to(tl.float32)
    if STATS:
        tl.atomic_add(stats_ptr + cols, tl.sum(x, 0), mask=cmask)
        tl.atomic_add(stats_ptr + d + cols, tl.sum(x * x, 0), mask=cmask)
        tl.atomic_add(stats_ptr + 2 * d, tl.sum(tl.sqrt(tl.sum(x * x, 1)), 0))
    dst = out_ptr + r[:, None] * d + cols[None, :]
    if INT8:
        amax = tl.max(tl.abs(x), 1)
        scale = tl.where(amax > 0, amax / 127, 1.0)
        q = tl.floor(x / scale[:, None] + 0.5)
        q = tl.minimum(tl.maximum(q, -127.0), 127.0)
        tl.store(dst, q.to(tl.int8), mask=mask)
        tl.store(scale_ptr + r, scale, mask=rmask)
    else:
        tl.store(dst, x.to(out_ptr.dtype.element_ty), mask=mask)


def gather_cast_triton(x: torch.Tensor, item: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype,
                       stats=None, *, block_rows: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel launch behind ``replab.kernels.fused_capture.gather_cast`` (same contract)."""
    rows, d = item.numel(), x.shape[2]
    out = torch.empty(rows, d, dtype=dtype, device=x.device)
    int8 = dtype == torch.int8
    scales = torch.empty(rows, dtype=torch.float32, device=x.device) if int8 else None
    if rows:
        _gather_cast_kernel[(triton.cdiv(rows, block_rows),)](
            x, item, pos, out, out if scales is None else scales, out if stats is None else stats.staging,
            rows, d, x.stride(0), x.stride(1), x.stride(2), INT8=int8, STATS=stats is not None,
            BR=block_rows, BD=triton.next_power_of_2(max(d, 1)))
    return out, scales
