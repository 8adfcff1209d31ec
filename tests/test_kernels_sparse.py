"""Sparse SAE kernels (CSR @ dense, SDDMM) under the Triton interpreter vs the CSR torch reference."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any triton import: kernels run on the CPU

import pytest
import torch

from replab.saes import sparse


def _sel(n, d_sae, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(d_sae, generator=g)[:k] for _ in range(n)]) if n else torch.zeros(0, k).long()
    return sparse.Selection.per_row(idx, d_sae), g


def _kernels():
    from replab.kernels.sparse_triton import csr_spmm, sddmm
    return csr_spmm, sddmm


@pytest.mark.parametrize("n,d,d_sae,k", [(9, 48, 64, 5), (1, 100, 37, 37), (6, 257, 50, 3)])
def test_decode_and_grads_match_csr_reference(n, d, d_sae, k):
    csr_spmm, sddmm = _kernels()
    sel, g = _sel(n, d_sae, k)
    vals = torch.randn(sel.nnz, generator=g)
    W = torch.randn(d, d_sae, generator=g).T  # [d_sae, d], non-contiguous
    grad = torch.randn(n, d, generator=g)
    m = sel.matrix(vals)
    torch.testing.assert_close(csr_spmm(m.crow_indices(), m.col_indices(), m.values(), W), m @ W,
                               rtol=1e-5, atol=1e-5)
    mt = sel.matrix_t(vals)
    torch.testing.assert_close(csr_spmm(mt.crow_indices(), mt.col_indices(), mt.values(), grad), mt @ grad,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sddmm(sel.rows, sel.cols, grad, W.T), (grad @ W.T)[sel.rows, sel.cols],
                               rtol=1e-5, atol=1e-5)


def test_half_precision_and_empty_rows():
    csr_spmm, sddmm = _kernels()
    flat = torch.tensor([3, 4, 40, 41, 42])  # BatchTopK-style: row 1 (of 4) keeps nothing, rows 0/2 several
    sel = sparse.Selection.from_flat(flat, (4, 20))
    g = torch.Generator().manual_seed(0)
    vals = torch.randn(sel.nnz, generator=g)
    for dt in (torch.float16, torch.bfloat16):
        W = torch.randn(20, 100, generator=g).to(dt)
        m = sel.matrix(vals.to(dt))
        got = csr_spmm(m.crow_indices(), m.col_indices(), m.values(), W)
        # the same half-precision inputs, float32 accumulation, one rounding
        want = (sel.matrix(vals.to(dt).float()) @ W.float()).to(dt)
        assert got.dtype == dt and torch.equal(got[1], torch.zeros(100, dtype=dt))
        ulp = torch.finfo(dt).eps * want.float().abs().clamp_min(1)
        assert bool(((got.float() - want.float()).abs() <= ulp).all())
    empty = sparse.Selection.per_row(torch.zeros(0, 3, dtype=torch.long), 20)
    assert sddmm(empty.rows, empty.cols, torch.zeros(0, 8), torch.zeros(8, 20)).shape == (0,)


def test_sparse_decode_autograd_through_kernels_equals_reference(monkeypatch):
    sel, g = _sel(7, 40, 6, seed=3)
    W = torch.randn(40, 48, generator=g, requires_grad=True)
    vals = torch.randn(sel.nnz, generator=g, requires_grad=True)
    upstream = torch.randn(7, 48, generator=g)
    ref = sparse.sparse_decode(vals, W, sel)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), (vals, W))
    monkeypatch.setattr(sparse, "use_triton", lambda *t: True)
    got = sparse.sparse_decode(vals, W, sel)
    got_grads = torch.autograd.grad((got * upstream).sum(), (vals, W))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for a, e in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_reference_gradcheck_float64():
    sel, g = _sel(3, 7, 2, seed=4)
    W = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    vals = torch.randn(sel.nnz, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, w: sparse.sparse_decode(v, w, sel), (vals, W))
