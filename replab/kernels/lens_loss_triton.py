"""Triton forward of the chunked lens losses: one program per block of rows, online logsumexp over vocabulary.

Each program computes its rows' logits tile by tile (``tl.dot`` over ``d`` in float32, IEEE precision, so
results match the torch reference to float32 rounding) and keeps per row the running max and sum of
``exp`` for q (and for p and the p-weighted ``t - z`` sum for KL, or the target logit for CE). Nothing of size
``[n, V]`` is written. Imported only by ``lens_loss`` when it dispatches here.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _tile(x_ptr, w_ptr, rows, cols, rmask, cmask, d, s_xn, s_xd, s_wd, s_wv,
          BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr):
    """``[BM, BV]`` float32 block of ``x @ w``."""
    acc = tl.zeros([BM, BV], dtype=tl.float32)
    for k0 in range(0, d, BD):
        ks = k0 + tl.arange(0, BD)
        kmask = ks < d
        x = tl.load(x_ptr + rows[:, None] * s_xn + ks[None, :] * s_xd, mask=rmask[:, None] & kmask[None, :],
                    other=0.0).to(tl.float32)
        w = tl.load(w_ptr + ks[:, None] * s_wd + cols[None, :] * s_wv, mask=kmask[:, None] & cmask[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.dot(x, w, input_precision="ieee")
    return acc


@triton.jit
def _lens_loss_kernel(h_ptr, w_ptr, b_ptr, th_ptr, tw_ptr, tb_ptr, tgt_ptr, loss_ptr, lz_ptr, lt_ptr,
                      n, d, dt, V, s_hn, s_hd, s_wd, s_wv, s_tn, s_td, s_twd, s_twv,
                      HAS_B: tl.constexpr, HAS_TB: tl.constexpr, KL: tl.constexpr,
                      BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < n
    m_z = tl.full([BM], float("-inf"), tl.float32)
    s_z = tl.zeros([BM], tl.float32)
    m_t = tl.full([BM], float("-inf"), tl.float32)
    s_t = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM], tl.float32)  # KL: sum exp(t - m_t) (t - z); CE: the target's logit
    tgt = tl.load(tgt_ptr + rows, mask=rmask & (not KL), other=-1)
    for v0 in range(0, V, BV):
        cols = v0 + tl.arange(0, BV)
        cmask = cols < V
        z = _tile(h_ptr, w_ptr, rows, cols, rmask, cmask, d, s_hn, s_hd, s_wd, s_wv, BM, BV, BD)
        if HAS_B:
            z += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        z = tl.where(cmask[None, :], z, float("-inf"))
        m_new = tl.maximum(m_z, tl.max(z, 1))
        s_z = s_z * tl.exp(m_z - m_new) + tl.sum(tl.exp(z - m_new[:, None]), 1)
        m_z = m_new
        if KL:
            t = _tile(th_ptr, tw_ptr, rows, cols, rmask, cmask, dt, s_tn, s_td, s_twd, s_twv, BM, BV, BD)
            if HAS_TB:
                t += tl.load(tb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
            t = tl.where(cmask[None, :], t, float("-inf"))
            mt_new = tl.maximum(m_t, tl.max(t, 1))
            scale = tl.exp(m_t - mt_new)
            e = tl.exp(t - mt_new[:, None])
            s_t = s_t * scale + tl.sum(e, 1)
            acc = acc * scale + tl.sum(tl.where(cmask[None, :], e * (t - z), 0.0), 1)
            m_t = mt_new
        else:
            acc += tl.sum(tl.where(cols[None, :] == tgt[:, None], z, 0.0), 1)
    lse_z = m_z + tl.log(s_z)
    if KL:
        lse_t = m_t + tl.log(s_t)
        tl.store(lt_ptr + rows, lse_t, mask=rmask)
        loss = acc / s_t - lse_t + lse_z
    else:
        loss = lse_z - acc
    tl.store(lz_ptr + rows, lse_z, mask=rmask)
    tl.store(loss_ptr + rows, loss, mask=rmask)


def row_losses(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, th: torch.Tensor | None,
               tW: torch.Tensor | None, tb: torch.Tensor | None, targets: torch.Tensor | None,
               *, block_rows: int = 32, block_vocab: int = 64, block_d: int = 32):
    """Per-row ``(loss [n], lse_q [n], lse_p [n] or None)`` in float32; KL when ``targets`` is None."""
    n, d = h.shape
    V = W.shape[1]
    kl = targets is None
    f32 = dict(dtype=torch.float32, device=h.device)
    loss, lse_z = torch.empty(n, **f32), torch.empty(n, **f32)
    lse_t = torch.empty(n, **f32) if kl else lse_z
    dummy = lse_z
    th_, tw_ = (th, tW) if kl else (h, W)
    _lens_loss_kernel[(triton.cdiv(n, block_rows),)](
        h, W, dummy if b is None else b, th_, tw_, dummy if tb is None else tb,
        targets if not kl else torch.zeros(1, dtype=torch.long, device=h.device), loss, lse_z, lse_t,
        n, d, th_.shape[1], V, h.stride(0), h.stride(1), W.stride(0), W.stride(1),
        th_.stride(0), th_.stride(1), tw_.stride(0), tw_.stride(1),
        HAS_B=b is not None, HAS_TB=kl and tb is not None, KL=kl, BM=block_rows, BV=block_vocab, BD=block_d)
    return loss, lse_z, (lse_t if kl else None)
