"""Lens losses from hidden states without materialising ``[n, d_vocab]`` logits.

``kl_from_hidden`` (tuned and attention lenses) and ``ce_from_hidden`` compute the mean over rows of
KL(p || softmax(h W + b)) or of the cross-entropy against token targets, chunking over rows and over
the vocabulary with an online logsumexp. The backward pass recomputes each chunk's logits from the
saved per-row logsumexps, so peak memory is ``chunk_rows * chunk_vocab`` floats, not ``n * V``
(GPT-2's 50,257-word vocabulary at 4,096 rows would otherwise be 820 MB per logits tensor).

The torch path below is the reference and the CPU path; on CUDA (triton installed,
``REPLAB_DISABLE_TRITON`` unset) the forward reduction runs as one Triton program per row block
(``lens_loss_triton.py``, the same online logsumexp) and the backward is the chunked torch recomputation.
"""

from __future__ import annotations

import torch

from replab.errors import DataError
from replab.kernels.dispatch import use_triton


def _acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else accumulates in float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _logits(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, v0: int, v1: int,
            dtype: torch.dtype) -> torch.Tensor:
    """``[rows, v1 - v0]`` logits of one vocabulary chunk, in ``dtype``."""
    z = h.to(dtype) @ W[:, v0:v1].to(dtype)
    return z if b is None else z + b[v0:v1].to(dtype)


def _row_stats(h, W, b, th, tW, tb, targets, chunk_vocab, dtype):
    """Per-row ``(loss, lse_q, lse_p)`` of one row chunk by an online logsumexp over vocabulary chunks.

    KL(p || q) = sum_v p_v (t_v - z_v) - lse_t + lse_z; the first sum is rescaled with lse_t's running max.
    Cross-entropy = lse_z - z[target].
    """
    n, V = h.shape[0], W.shape[1]
    neg = torch.full((n,), -torch.inf, dtype=dtype, device=h.device)
    m_z, s_z = neg.clone(), torch.zeros(n, dtype=dtype, device=h.device)
    m_t, s_t, a_t = neg.clone(), s_z.clone(), s_z.clone()
    picked = s_z.clone()
    for v0 in range(0, V, chunk_vocab):
        v1 = min(V, v0 + chunk_vocab)
        z = _logits(h, W, b, v0, v1, dtype)
        m_new = torch.maximum(m_z, z.max(1).values)
        s_z = s_z * torch.exp(m_z - m_new) + torch.exp(z - m_new[:, None]).sum(1)
        m_z = m_new
        if targets is None:
            t = _logits(th, tW, tb, v0, v1, dtype)
            m_new = torch.maximum(m_t, t.max(1).values)
            scale, e = torch.exp(m_t - m_new), torch.exp(t - m_new[:, None])
            s_t = s_t * scale + e.sum(1)
            a_t = a_t * scale + (e * (t - z)).sum(1)
            m_t = m_new
        else:
            inside = (targets >= v0) & (targets < v1)
            col = (targets - v0).clamp(0, v1 - v0 - 1)
            picked = picked + torch.where(inside, z.gather(1, col[:, None])[:, 0], 0)
    lse_z = m_z + torch.log(s_z)
    if targets is not None:
        return lse_z - picked, lse_z, None
    lse_t = m_t + torch.log(s_t)
    return a_t / s_t - lse_t + lse_z, lse_z, lse_t


class _ChunkedLoss(torch.autograd.Function):
    """Mean per-row loss; inputs ``h, W, b`` get gradients, the target side does not."""

    @staticmethod
    def forward(ctx, h, W, b, th, tW, tb, targets, chunk_rows, chunk_vocab, kernel):
        dtype = _acc_dtype(h, W)
        n = h.shape[0]
        if kernel:
            from replab.kernels.lens_loss_triton import row_losses
            loss, lse_z, lse_t = row_losses(h, W, b, th, tW, tb, targets)
            total = loss.sum()
        else:
            total = torch.zeros((), dtype=dtype, device=h.device)
            lse_z = torch.empty(n, dtype=dtype, device=h.device)
            lse_t = torch.empty(n, dtype=dtype, device=h.device) if targets is None else None
            for r0 in range(0, n, chunk_rows):
                r1 = min(n, r0 + chunk_rows)
                loss, lz, lt = _row_stats(h[r0:r1], W, b, None if th is None else th[r0:r1], tW, tb,
                                          None if targets is None else targets[r0:r1], chunk_vocab, dtype)
                total = total + loss.sum()
                lse_z[r0:r1] = lz
                if lt is not None:
                    lse_t[r0:r1] = lt
        ctx.save_for_backward(h, W, b, th, tW, tb, targets, lse_z, lse_t)
        ctx.chunks = chunk_rows, chunk_vocab
        return (total / n).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        h, W, b, th, tW, tb, targets, lse_z, lse_t = ctx.saved_tensors
        chunk_rows, chunk_vocab = ctx.chunks
        dtype = lse_z.dtype
        n, V = h.shape[0], W.shape[1]
        need_h, need_W, need_b = ctx.needs_input_grad[:3]
        g_h = torch.zeros(h.shape, dtype=dtype, device=h.device) if need_h else None
        g_W = torch.zeros(W.shape, dtype=dtype, device=W.device) if need_W else None
        g_b = torch.zeros(V, dtype=dtype, device=W.device) if (need_b and b is not None) else None
        scale = grad.to(dtype) / n
        for r0 in range(0, n, chunk_rows):
            r1 = min(n, r0 + chunk_rows)
            hc = h[r0:r1].to(dtype)
            for v0 in range(0, V, chunk_vocab):
                v1 = min(V, v0 + chunk_vocab)
                dz = torch.exp(_logits(hc, W, b, v0, v1, dtype) - lse_z[r0:r1, None])   # q
                if targets is None:
                    dz = dz - torch.exp(_logits(th[r0:r1], tW, tb, v0, v1, dtype) - lse_t[r0:r1, None])
                else:
                    tc = targets[r0:r1]
                    inside = ((tc >= v0) & (tc < v1)).nonzero()[:, 0]
                    dz[inside, tc[inside] - v0] -= 1
                dz = dz * scale
                if g_h is not None:
                    g_h[r0:r1] += dz @ W[:, v0:v1].to(dtype).T
                if g_W is not None:
                    g_W[:, v0:v1] += hc.T @ dz
                if g_b is not None:
                    g_b[v0:v1] += dz.sum(0)
        cast = lambda g, like: None if g is None else g.to(like.dtype)  # noqa: E731
        return cast(g_h, h), cast(g_W, W), cast(g_b, b), None, None, None, None, None, None, None


def _kernel(h: torch.Tensor, W: torch.Tensor) -> bool:
    """The Triton forward serves CUDA float32/16/bf16; float64 (gradcheck) stays on the torch path."""
    return use_triton(h, W) and h.dtype != torch.float64 and W.dtype != torch.float64


def _check(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, chunk_rows: int, chunk_vocab: int) -> None:
    if h.ndim != 2 or W.ndim != 2 or h.shape[1] != W.shape[0]:
        raise DataError(f"Lens loss needs h [n, d] and W [d, V]; got h {tuple(h.shape)} and W {tuple(W.shape)}. "
                        "Flatten batch and position into rows first.")
    if b is not None and tuple(b.shape) != (W.shape[1],):
        raise DataError(f"Bias b must be [V] = [{W.shape[1]}]; got {tuple(b.shape)}.")
    if h.shape[0] == 0:
        raise DataError("Lens loss over zero rows is undefined; pass at least one row.")
    if chunk_rows < 1 or chunk_vocab < 1:
        raise DataError(f"chunk_rows and chunk_vocab must be positive; got {chunk_rows}, {chunk_vocab}.")


def kl_from_hidden(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None, *, target_h: torch.Tensor,
                   target_W: torch.Tensor | None = None, target_b: torch.Tensor | None = None,
                   chunk_rows: int = 1024, chunk_vocab: int = 8192) -> torch.Tensor:
    """Mean over rows of KL(p || q), p = softmax(target_h @ target_W + target_b), q = softmax(h @ W + b).

    Args:
        h: ``[n, d]`` hidden states (e.g. a tuned lens's translated residual).
        W: ``[d, V]`` unembedding; b: ``[V]`` or None.
        target_h: ``[n, d_t]`` hidden states giving the target distribution (no gradient).
        target_W: ``[d_t, V]``, default ``W``; target_b: ``[V]``, default ``b``.
        chunk_rows, chunk_vocab: block sizes; peak extra memory is ``chunk_rows * chunk_vocab`` floats.

    Returns:
        A scalar in ``h``'s dtype with gradients to ``h``, ``W`` and ``b``. Attention lens: concatenate the
        heads' outputs to ``[n, H*d]`` and stack their maps to ``[H*d, V]``; the summed logits are one product.
    """
    _check(h, W, b, chunk_rows, chunk_vocab)
    tW = W if target_W is None else target_W
    tb = b if target_b is None else target_b
    if target_h.shape[0] != h.shape[0] or target_h.shape[1] != tW.shape[0] or tW.shape[1] != W.shape[1]:
        raise DataError(f"target_h {tuple(target_h.shape)} / target_W {tuple(tW.shape)} do not match h "
                        f"{tuple(h.shape)} and W {tuple(W.shape)}: same rows, same vocabulary.")
    args = (target_h.detach(), tW.detach(), None if tb is None else tb.detach())
    return _ChunkedLoss.apply(h, W, b, *args, None, chunk_rows, chunk_vocab, _kernel(h, W))


def ce_from_hidden(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None, *, targets: torch.Tensor,
                   chunk_rows: int = 1024, chunk_vocab: int = 8192) -> torch.Tensor:
    """Mean cross-entropy of softmax(h @ W + b) against ``targets`` [n] (long), chunked like ``kl_from_hidden``.

    Returns:
        A scalar in ``h``'s dtype with gradients to ``h``, ``W`` and ``b``.
    """
    _check(h, W, b, chunk_rows, chunk_vocab)
    if targets.shape != (h.shape[0],) or targets.dtype != torch.long:
        raise DataError(f"targets must be a long tensor [n] = [{h.shape[0]}]; got {targets.dtype} "
                        f"{tuple(targets.shape)}.")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= W.shape[1]):
        raise DataError(f"targets must lie in [0, {W.shape[1]}); got range [{int(targets.min())}, "
                        f"{int(targets.max())}].")
    return _ChunkedLoss.apply(h, W, b, None, None, None, targets, chunk_rows, chunk_vocab, _kernel(h, W))
