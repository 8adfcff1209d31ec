"""Sparse training path for SAEs that keep a few latents per token (TopK, BatchTopK, AuxK).

A dense TopK step spends six ``[batch, d_in] x [d_in, d_sae]``-sized products: the encoder,
the decoder, and the weight and input gradients of each (the encoder's input gradient feeds
``b_dec``). Only the encoder's forward product has to be dense (it is
what chooses the latents). Here the latents are chosen without autograd on that product, and
two autograd functions differentiate only the chosen entries:

- ``gather_preacts``: the chosen pre-activations, with gradients for ``x``, ``W_enc`` and
  ``b_enc`` computed as sparse-dense products (``G @ W_enc.T``, ``(G.T @ x).T``);
- ``sparse_decode``: ``acts @ W_dec`` with ``acts`` sparse, whose value gradients are a
  sampled dense-dense product (SDDMM) and whose ``W_dec`` gradient is ``acts.T @ grad``.

Each backward product costs ``nnz * d_in`` instead of ``batch * d_sae * d_in``. Results equal
the dense computation to float rounding (tested); OpenAI's TopK kernels make the same trade on
GPUs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import torch

from replab.kernels.dispatch import use_triton

# torch marks CSR tensors as beta; replab only uses CSR @ dense and sampled_addmm, both tested here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
SPARSE_DTYPES = (torch.float32, torch.float64)  # what torch's CPU sparse BLAS supports


@dataclass(frozen=True, eq=False)
class Selection:
    """Which latents each row keeps, in CSR order (rows non-decreasing, columns sorted within a row).

    Attributes:
        rows: ``[nnz]`` row (token) of each kept entry.
        cols: ``[nnz]`` latent of each kept entry.
        crow: ``[batch + 1]`` CSR row offsets.
        shape: ``(batch, d_sae)``.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    crow: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def per_row(cls, indices: torch.Tensor, d_sae: int) -> "Selection":
        """From ``[batch, k]`` latent indices (TopK): ``k`` entries in every row."""
        batch, k = indices.shape
        cols = indices.sort(dim=-1).values.reshape(-1)
        rows = torch.arange(batch, device=indices.device).repeat_interleave(k)
        crow = torch.arange(0, batch * k + 1, k, device=indices.device)
        return cls(rows, cols, crow, (batch, d_sae))

    @classmethod
    def from_flat(cls, flat: torch.Tensor, shape: tuple[int, int]) -> "Selection":
        """From indices into the flattened ``[batch, d_sae]`` matrix (BatchTopK)."""
        flat = flat.sort().values
        rows, cols = flat.div(shape[1], rounding_mode="floor"), flat.remainder(shape[1])
        return cls(rows, cols, _offsets(rows, shape[0]), shape)

    @property
    def nnz(self) -> int:
        return self.cols.numel()

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """``[batch, d_sae]`` sparse CSR matrix holding ``values`` [nnz] at the kept entries."""
        return torch.sparse_csr_tensor(self.crow, self.cols, values, size=self.shape, check_invariants=False)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose, ``[d_sae, batch]``, as a CSR matrix."""
        order, crow_t = self._transpose
        return torch.sparse_csr_tensor(crow_t, self.rows[order], values[order], size=self.shape[::-1],
                                       check_invariants=False)

    def fired(self, values: torch.Tensor) -> torch.Tensor:
        """``[d_sae]`` bool: latents with a positive value in some row."""
        out = torch.zeros(self.shape[1], dtype=torch.bool, device=self.cols.device)
        out[self.cols[values > 0]] = True
        return out

    @cached_property
    def _transpose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Permutation putting entries in column-major order, and the transpose's row offsets."""
        return torch.argsort(self.cols, stable=True), _offsets(self.cols, self.shape[1])


def _offsets(sorted_ids: torch.Tensor, n: int) -> torch.Tensor:
    """CSR offsets ``[n + 1]`` for non-decreasing ids in ``[0, n)``."""
    crow = torch.zeros(n + 1, dtype=torch.long, device=sorted_ids.device)
    crow[1:] = torch.bincount(sorted_ids, minlength=n).cumsum(0)
    return crow


def _spmm(sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """CSR @ dense, through float32 for dtypes the sparse kernels lack (fp16/bf16).

    On CUDA with triton (``replab.kernels``) one Triton program per row; this CSR path is its reference.
    """
    if use_triton(dense) and dense.dtype != torch.float64:
        from replab.kernels.sparse_triton import csr_spmm
        return csr_spmm(sparse.crow_indices(), sparse.col_indices(), sparse.values(), dense)
    if dense.dtype in SPARSE_DTYPES:
        return sparse @ dense
    return (sparse.to(torch.float32) @ dense.float()).to(dense.dtype)


def _sddmm(sel: Selection, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a @ b)[sel]`` as ``[nnz]`` values without forming the dense product (Triton on CUDA)."""
    if use_triton(a, b) and a.dtype != torch.float64:
        from replab.kernels.sparse_triton import sddmm
        return sddmm(sel.rows, sel.cols, a, b)
    if a.dtype in SPARSE_DTYPES:
        pattern = sel.matrix(a.new_zeros(sel.nnz))
        return torch.sparse.sampled_addmm(pattern, a, b, beta=0.0).values()
    return _sddmm(sel, a.float(), b.float()).to(a.dtype)


class _GatherPreacts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pre, sel: Selection):
        ctx.sel = sel
        ctx.save_for_backward(x, weight)
        return pre[sel.rows, sel.cols]

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        sel: Selection = ctx.sel
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = _spmm(sel.matrix(grad), weight.T) if need_x else None
        grad_w = _spmm(sel.matrix_t(grad), x).T if need_w else None
        grad_b = grad.new_zeros(sel.shape[1]).index_add_(0, sel.cols, grad) if need_b else None
        return grad_x, grad_w, grad_b, None, None


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, weight, sel: Selection):
        ctx.sel = sel
        ctx.save_for_backward(values, weight)
        return _spmm(sel.matrix(values), weight)

    @staticmethod
    def backward(ctx, grad):
        values, weight = ctx.saved_tensors
        sel: Selection = ctx.sel
        grad_values = _sddmm(sel, grad, weight.T) if ctx.needs_input_grad[0] else None
        grad_weight = _spmm(sel.matrix_t(values), grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_weight, None


def gather_preacts(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pre: torch.Tensor, sel: Selection
) -> torch.Tensor:
    """The kept entries of ``x @ weight + bias``, differentiable in all three.

    Args:
        x: ``[batch, d_in]`` encoder input.
        weight: ``[d_in, d_sae]``; bias: ``[d_sae]``.
        pre: ``[batch, d_sae]``, the same product computed without autograd (it chose ``sel``).
        sel: the kept entries.

    Returns:
        ``[nnz]`` pre-activations in ``sel``'s order.
    """
    return _GatherPreacts.apply(x, weight, bias, pre.detach(), sel)


def sparse_decode(values: torch.Tensor, weight: torch.Tensor, sel: Selection) -> torch.Tensor:
    """``dense(values) @ weight`` for sparse latent values, differentiable in both.

    Args:
        values: ``[nnz]`` latent activations in ``sel``'s order.
        weight: ``[d_sae, d_in]`` decoder.
        sel: where the values sit in the ``[batch, d_sae]`` code matrix.

    Returns:
        ``[batch, d_in]`` reconstruction without the decoder bias.
    """
    return _SparseDecode.apply(values, weight, sel)
