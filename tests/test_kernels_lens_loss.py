"""Chunked lens losses against the naive [n, V] formulas: values, gradients, gradcheck, errors."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any triton import: kernels run on the CPU

import pytest
import torch
import torch.nn.functional as F

from replab.errors import DataError
from replab.kernels import ce_from_hidden, kl_from_hidden


def _naive_kl(h, W, b, th, tW, tb):
    logq = F.log_softmax(h @ W + (0 if b is None else b), -1)
    logp = F.log_softmax((th @ tW + (0 if tb is None else tb)).detach(), -1)
    return (logp.exp() * (logp - logq)).sum(-1).mean()


def _naive_ce(h, W, b, targets):
    return F.cross_entropy(h @ W + (0 if b is None else b), targets)


def _inputs(n, d, V, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    W = (torch.randn(d, V, generator=g, dtype=dtype) / d ** 0.5).requires_grad_()
    b = torch.randn(V, generator=g, dtype=dtype, requires_grad=True)
    th = torch.randn(n, d, generator=g, dtype=dtype)
    return h, W, b, th


@pytest.mark.parametrize("n,d,V,cr,cv", [(37, 48, 257, 8, 50), (1, 100, 100, 1024, 8192), (20, 16, 300, 7, 301)])
def test_kl_matches_naive_values_and_grads(n, d, V, cr, cv):
    h, W, b, th = _inputs(n, d, V)
    got = kl_from_hidden(h, W, b, target_h=th, chunk_rows=cr, chunk_vocab=cv)
    gh, gW, gb = torch.autograd.grad(got, (h, W, b))
    want = _naive_kl(h, W, b, th, W, b)
    wh, wW, wb = torch.autograd.grad(want, (h, W, b))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, e in ((gh, wh), (gW, wW), (gb, wb)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_kl_separate_target_map_and_no_bias():
    h, W, _, th = _inputs(12, 24, 90)
    tW, tb = torch.randn(10, 90), torch.randn(90)
    th = torch.randn(12, 10)
    got = kl_from_hidden(h, W, target_h=th, target_W=tW, target_b=tb, chunk_rows=5, chunk_vocab=16)
    want = _naive_kl(h, W, None, th, tW, tb)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(got, h)[0], torch.autograd.grad(want, h)[0], rtol=1e-4, atol=1e-6)


def test_kl_of_identical_distributions_is_zero():
    h, W, b, _ = _inputs(9, 16, 70)
    assert abs(float(kl_from_hidden(h, W, b, target_h=h.detach(), chunk_vocab=13).detach())) < 1e-6


@pytest.mark.parametrize("n,d,V,cr,cv", [(37, 48, 257, 8, 50), (1, 100, 100, 1024, 8192)])
def test_ce_matches_naive_values_and_grads(n, d, V, cr, cv):
    h, W, b, _ = _inputs(n, d, V)
    targets = torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(1))
    got = ce_from_hidden(h, W, b, targets=targets, chunk_rows=cr, chunk_vocab=cv)
    want = _naive_ce(h, W, b, targets)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, e in zip(torch.autograd.grad(got, (h, W, b)), torch.autograd.grad(want, (h, W, b))):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_gradcheck_float64_small():
    h, W, b, th = _inputs(5, 6, 11, dtype=torch.float64)
    targets = torch.tensor([0, 10, 3, 3, 7])
    tW, tb = W.detach().clone(), b.detach().clone()  # fixed target: p carries no gradient by contract
    assert torch.autograd.gradcheck(lambda h, W, b: kl_from_hidden(
        h, W, b, target_h=th, target_W=tW, target_b=tb, chunk_rows=2, chunk_vocab=4), (h, W, b))
    assert torch.autograd.gradcheck(
        lambda h, W, b: ce_from_hidden(h, W, b, targets=targets, chunk_rows=2, chunk_vocab=4), (h, W, b))


def test_bad_shapes_raise_clear_errors():
    h, W, b, th = _inputs(4, 8, 10)
    with pytest.raises(DataError, match="h \\[n, d\\]"):
        kl_from_hidden(h[0], W, b, target_h=th)
    with pytest.raises(DataError, match="targets must lie"):
        ce_from_hidden(h, W, b, targets=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(DataError, match="zero rows"):
        ce_from_hidden(h[:0], W, b, targets=torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("n,d,V", [(37, 48, 257), (1, 100, 100)])
def test_triton_forward_matches_reference(n, d, V):
    from replab.kernels import lens_loss
    from replab.kernels.lens_loss_triton import row_losses

    h, W, b, th = _inputs(n, d, V)
    h, W, b = h.detach(), W.detach(), b.detach()
    Wt = W.T.contiguous().T  # non-contiguous (column-major) unembedding
    targets = torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(2))
    for tgt, args in ((None, (th, W, b)), (targets, (None, None, None))):
        loss, lz, lt = row_losses(h, Wt, b, *args, tgt, block_rows=16, block_vocab=32, block_d=16)
        ref, rz, rt = lens_loss._row_stats(h, W, b, *args, tgt, 50, torch.float32)
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lz, rz, rtol=1e-6, atol=1e-6)
        if tgt is None:
            torch.testing.assert_close(lt, rt, rtol=1e-6, atol=1e-6)


def test_triton_forward_gradients_through_dispatch(monkeypatch):
    from replab.kernels import lens_loss

    monkeypatch.setattr(lens_loss, "use_triton", lambda *t: True)  # CPU tensors through the kernel (interpreter)
    h, W, b, th = _inputs(19, 48, 100)
    got = kl_from_hidden(h, W, b, target_h=th)
    want = _naive_kl(h, W, b, th, W, b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, e in zip(torch.autograd.grad(got, (h, W, b)), torch.autograd.grad(want, (h, W, b))):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_kill_switch_and_cpu_never_dispatch(monkeypatch):
    from replab.kernels.dispatch import use_triton

    from types import SimpleNamespace

    cuda_like = SimpleNamespace(is_cuda=True)
    assert not use_triton(torch.zeros(2)) and use_triton(cuda_like)
    monkeypatch.setenv("REPLAB_DISABLE_TRITON", "1")
    assert not use_triton(cuda_like)
