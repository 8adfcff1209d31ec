"""``replab.lenses.evaluate``: per-layer KL, cross-entropy, top-1 agreement, entropy and prediction depth."""

from __future__ import annotations

import pandas as pd
import torch

from replab.lenses.base import Lens, final_hook


@torch.no_grad()
def evaluate(lens: Lens, model, data, *, batch_size: int = 16, positions: str = "all", context: int | None = None,
             max_tokens: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Score ``lens`` against the model's own output on ``data`` (anything ``run_batches`` reads).

    Returns:
        One row per lens layer: ``layer``, ``hook``, ``kl`` (mean KL(model || lens), nats), ``ce`` (cross-entropy
        of the next token, rows with one), ``top1`` (agreement of the lens's top token with the model's),
        ``entropy`` (of the lens distribution), ``depth_fraction`` (tokens whose prediction depth is at most
        this layer). ``df.attrs``: ``prediction_depth`` (mean over tokens of the first layer from which the
        lens's top-1 stays the model's; ``n_layers`` when only the output agrees), ``tokens``, ``final_ce``.
    """
    from replab.models import run_batches

    layers = lens.layers()
    hooks = sorted({lens.input_hook(layer) for layer in layers} | {final_hook(model)})
    L = len(layers)
    sums = torch.zeros(L, 4, dtype=torch.float64)  # kl, ce, top1, entropy
    depth_hist = torch.zeros(L + 1, dtype=torch.float64)
    n = n_ce = 0
    final_ce = 0.0
    for fb in run_batches(model, data, hooks, positions=positions, logits="logprobs", batch_size=batch_size,
                          context=context, max_tokens=max_tokens, progress=progress):
        logp = fb.logits
        top = logp.argmax(-1)
        nxt_pos = fb.pos + 1
        has_next = nxt_pos < fb.lengths[fb.item]
        nxt = fb.tokens[fb.item, nxt_pos.clamp(max=fb.tokens.shape[1] - 1)]
        agree = torch.zeros(L, len(top), dtype=torch.bool)
        for i, layer in enumerate(layers):
            logq = torch.log_softmax(lens(fb.acts[lens.input_hook(layer)], layer).float(), -1)
            sums[i, 0] += float((logp.exp() * (logp - logq)).sum())
            sums[i, 1] += float(-logq[has_next].gather(1, nxt[has_next, None]).sum())
            agree[i] = (logq.argmax(-1) == top).cpu()
            sums[i, 2] += float(agree[i].sum())
            sums[i, 3] += float(-(logq.exp() * logq).sum())
        stays = agree.flip(0).cumprod(0).flip(0).bool()  # [L, rows]: agrees here and at every later layer
        depth = L - stays.sum(0)
        depth_hist += torch.bincount(depth, minlength=L + 1).double()
        final_ce += float(-logp[has_next].gather(1, nxt[has_next, None]).sum())
        n += len(top)
        n_ce += int(has_next.sum())
    cum = depth_hist.cumsum(0) / max(n, 1)
    df = pd.DataFrame({
        "layer": layers, "hook": [lens.input_hook(layer) for layer in layers],
        "kl": (sums[:, 0] / max(n, 1)).numpy(), "ce": (sums[:, 1] / max(n_ce, 1)).numpy(),
        "top1": (sums[:, 2] / max(n, 1)).numpy(), "entropy": (sums[:, 3] / max(n, 1)).numpy(),
        "depth_fraction": cum[:L].numpy(),
    })
    df.attrs.update(prediction_depth=float((depth_hist * torch.arange(L + 1)).sum() / max(n, 1)), tokens=n,
                    final_ce=final_ce / max(n_ce, 1))
    return df
