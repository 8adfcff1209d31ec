"""Triton kernels for the sparse SAE step: CSR @ dense (decode and its weight gradient) and SDDMM (value gradient).

``csr_spmm``: one program per sparse row; it walks the row's entries and accumulates ``value * dense[col]``
over the whole (masked, power-of-two padded) width in float32 — the embedding-bag pattern, with no atomics.
``sddmm``: one program per block of kept entries; ``out[j] = sum_k a[rows[j], k] * b[k, cols[j]]``.
The torch references (and CPU path) are the CSR ops in ``replab.saes.sparse``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _csr_spmm_kernel(crow_ptr, col_ptr, val_ptr, dense_ptr, out_ptr, d, s_dr, s_dd,
                     BD: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BD)
    cmask = cols < d
    start = tl.load(crow_ptr + r)
    end = tl.load(crow_ptr + r + 1)
    acc = tl.zeros([BD], dtype=tl.float32)
    for j in range(start, end):
        c = tl.load(col_ptr + j)
        v = tl.load(val_ptr + j).to(tl.float32)
        acc += v * tl.load(dense_ptr + c * s_dr + cols * s_dd, mask=cmask, other=0.0).to(tl.float32)
    tl.store(out_ptr + r * d + cols, acc.to(out_ptr.dtype.element_ty), mask=cmask)


@triton.jit
def _sddmm_kernel(row_ptr, col_ptr, a_ptr, b_ptr, out_ptr, nnz, d, s_an, s_ad, s_bd, s_bc,
                  BN: tl.constexpr, BD: tl.constexpr):
    j = tl.program_id(0) * BN + tl.arange(0, BN)
    jmask = j < nnz
    r = tl.load(row_ptr + j, mask=jmask, other=0)
    c = tl.load(col_ptr + j, mask=jmask, other=0)
    acc = tl.zeros([BN], dtype=tl.float32)
    for k0 in range(0, d, BD):
        ks = k0 + tl.arange(0, BD)
        m = jmask[:, None] & (ks < d)[None, :]
        a = tl.load(a_ptr + r[:, None] * s_an + ks[None, :] * s_ad, mask=m, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + ks[None, :] * s_bd + c[:, None] * s_bc, mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(a * b, 1)
    tl.store(out_ptr + j, acc.to(out_ptr.dtype.element_ty), mask=jmask)


def csr_spmm(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``[n, d_sae]`` CSR (crow ``[n + 1]``, cols/values ``[nnz]``) @ dense ``[d_sae, d]`` -> ``[n, d]``."""
    n, d = crow.numel() - 1, dense.shape[1]
    out = torch.empty(n, d, dtype=dense.dtype, device=dense.device)
    if n and d:
        _csr_spmm_kernel[(n,)](crow, cols, values, dense, out, d, dense.stride(0), dense.stride(1),
                               BD=triton.next_power_of_2(d))
    return out


def sddmm(rows: torch.Tensor, cols: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          *, block_nnz: int = 32, block_d: int = 128) -> torch.Tensor:
    """``(a [n, d] @ b [d, m])[rows, cols]`` as ``[nnz]`` without the dense product."""
    nnz, d = rows.numel(), a.shape[1]
    out = torch.empty(nnz, dtype=a.dtype, device=a.device)
    if nnz:
        _sddmm_kernel[(triton.cdiv(nnz, block_nnz),)](rows, cols, a, b, out, nnz, d, a.stride(0), a.stride(1),
                                                      b.stride(0), b.stride(1), BN=block_nnz,
                                                      BD=min(block_d, triton.next_power_of_2(max(d, 1))))
    return out
