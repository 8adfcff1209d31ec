"""The training loss of every layer at once: KL(final || lens) summed over layers, with its gradient, in row chunks.

``kl_backward`` walks the rows in chunks of ``chunk_rows``; per chunk it computes the target
distribution once and, for each layer, the lens's log-probabilities, the KL and the gradient of the
logits ``(q - p) / n``, which it multiplies back into gradients of the decoder inputs right away. So
a step costs one target product per chunk plus two products per layer (``replab.kernels.kl_from_hidden``
recomputes both sides' logits in its backward: five), and memory is ``chunk_rows x d_vocab`` floats
a few times over, never ``[rows, d_vocab]``. The gradients then flow into the lens's parameters with
one ``torch.autograd.backward``. ``replab.lenses.lens_loss`` (autograd through ``kl_from_hidden``) is
the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Decoder = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _logits(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return h @ W if b is None else torch.addmm(b, h, W)


def kl_backward(decoders: Sequence[Decoder], target: Decoder, *, chunk_rows: int = 128) -> torch.Tensor:
    """Per-layer mean KL(softmax(target) || softmax(h W + b)) ``[layers]``; accumulates the sum's gradients.

    Args:
        decoders: per layer ``(h [n, k], W [k, V], b [V] or None)`` as ``Lens.decoder_inputs`` returns them;
            whichever of them require grad receive ``d(sum of the layers' KL) / d(.)`` through ``.backward``.
        target: ``(h_t [n, d], W_t [d, V], b_t)``, the model's own last hidden state (normed) and unembedding.
        chunk_rows: rows per chunk; peak extra memory about ``4 * chunk_rows * V`` floats.

    Returns:
        The layers' mean KL over rows (float32 on the rows' device, no graph).
    """
    th, tW, tb = (None if t is None else t.detach().float() for t in target)
    n = th.shape[0]
    plain = [tuple(None if t is None else t.detach().float() for t in dec) for dec in decoders]
    grads = [[torch.zeros_like(t) if t is not None and t.requires_grad else None for t in dec] for dec in decoders]
    total = torch.zeros(len(decoders), dtype=torch.float64, device=th.device)  # no host sync per chunk
    with torch.no_grad():
        for r0 in range(0, n, chunk_rows):
            r1 = min(n, r0 + chunk_rows)
            logp = torch.log_softmax(_logits(th[r0:r1], tW, tb), -1).view(-1)
            p = logp.exp()
            neg_entropy = torch.dot(p, logp).double()
            for i, ((h, W, b), (g_h, g_W, g_b)) in enumerate(zip(plain, grads)):
                hc = h[r0:r1]
                logq = torch.log_softmax(_logits(hc, W, b), -1)
                total[i] += neg_entropy - torch.dot(p, logq.view(-1)).double()
                dz = logq.exp_().view(-1).sub_(p).view(r1 - r0, -1)  # n * d KL / d logits, in logq's memory
                if g_h is not None:
                    torch.mm(dz, W.T, out=g_h[r0:r1]).div_(n)
                if g_W is not None:
                    g_W.addmm_(hc.T, dz, alpha=1 / n)
                if g_b is not None:
                    g_b.add_(dz.sum(0), alpha=1 / n)
    pairs = [(t, g) for dec, gs in zip(decoders, grads) for t, g in zip(dec, gs) if g is not None]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [g.to(t.dtype) for t, g in pairs])
    return (total / n).float()
