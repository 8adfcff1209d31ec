"""``replab.lenses.evaluate``: per-layer (and per-head) KL, cross-entropy, top-1 agreement, entropy, prediction depth.

For attention lenses also: each head's top-k decoded tokens at the last position of a prompt set
(``head_top_tokens``), and where the true next token is known (the world model's relation prompt sets)
how often each head's lens ranks it in its top-k (``head_truth``, ``head_facts``: which heads carry which facts).
"""

from __future__ import annotations

import pandas as pd
import torch

from replab.lenses.attention import AttentionLens
from replab.lenses.base import Lens, final_hook
from replab.protocols import HookedModel


@torch.no_grad()
def evaluate(lens: Lens, model: HookedModel, data, *, batch_size: int = 16, positions: str = "all", context: int | None = None,
             max_tokens: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Score ``lens`` against the model's own output on ``data`` (anything ``run_batches`` reads).

    Returns:
        One row per lens layer: ``layer``, ``head`` (-1: the layer's whole lens), ``hook``, ``kl`` (mean KL(model || lens), nats), ``ce`` (cross-entropy
        of the next token, rows with one), ``top1`` (agreement of the lens's top token with the model's),
        ``entropy`` (of the lens distribution), ``depth_fraction`` (tokens whose prediction depth is at most
        this layer). An attention lens adds one row per (block, head) scoring that head's lens alone
        (``head_logits``), ``depth_fraction`` NaN there. ``df.attrs``: ``prediction_depth`` (mean over tokens of the first layer from which the
        lens's top-1 stays the model's; ``n_layers`` when only the output agrees), ``tokens``, ``final_ce``.
    """
    from replab.models import run_batches

    layers = lens.layers()
    hooks = sorted({lens.input_hook(layer) for layer in layers} | {final_hook(model)})
    L = len(layers)
    heads = isinstance(lens, AttentionLens)
    H = int(model.cfg.n_heads) if heads else 0
    sums = torch.zeros(L, 4, dtype=torch.float64)  # kl, ce, top1, entropy
    head_sums = torch.zeros(L, H, 4, dtype=torch.float64)
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
            if heads:
                head_sums[i] += _scores(torch.log_softmax(lens.head_logits(fb.acts[lens.input_hook(layer)], layer)
                                                          .float(), -1), logp, top, nxt, has_next)
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
    if heads:
        hs = head_sums / torch.tensor([max(n, 1), max(n_ce, 1), max(n, 1), max(n, 1)], dtype=torch.float64)
        df.insert(1, "head", -1)
        rows = pd.DataFrame([{"layer": layer, "head": h, "hook": lens.input_hook(layer), "kl": float(hs[i, h, 0]),
                              "ce": float(hs[i, h, 1]), "top1": float(hs[i, h, 2]), "entropy": float(hs[i, h, 3]),
                              "depth_fraction": float("nan")} for i, layer in enumerate(layers) for h in range(H)])
        df = pd.concat([df, rows], ignore_index=True)
    df.attrs.update(prediction_depth=float((depth_hist * torch.arange(L + 1)).sum() / max(n, 1)), tokens=n,
                    final_ce=final_ce / max(n_ce, 1))
    return df


def _scores(logq: torch.Tensor, logp: torch.Tensor, top: torch.Tensor, nxt: torch.Tensor,
            has_next: torch.Tensor) -> torch.Tensor:
    """Summed (kl, ce, top1, entropy) per head: ``logq`` ``[rows, H, V]`` against the model's ``logp`` ``[rows, V]``."""
    p = logp.exp()[:, None]
    kl = (p * (logp[:, None] - logq)).sum((0, 2))
    ce = -logq[has_next].gather(2, nxt[has_next, None, None].expand(-1, logq.shape[1], 1)).sum((0, 2))
    top1 = (logq.argmax(-1) == top[:, None]).sum(0)
    ent = -(logq.exp() * logq).sum((0, 2))
    return torch.stack([kl, ce, top1.to(kl.dtype), ent], -1).double().cpu()


@torch.no_grad()
def _last_heads(lens: AttentionLens, model, prompts, batch_size: int):
    """Yield ``(start, {block: [n, H, V] head lens logits})`` at the last position of each prompt."""
    from replab.models import run_batches

    hooks = sorted({lens.input_hook(b) for b in lens.layers()})
    for fb in run_batches(model, prompts, hooks, positions="last", batch_size=batch_size):
        yield fb.start, {b: lens.head_logits(fb.acts[lens.input_hook(b)], b).float() for b in lens.layers()}


def _require_attention(lens) -> None:
    if not isinstance(lens, AttentionLens):
        from replab.errors import DataError
        raise DataError(f"Per-head tables need an attention lens; got a {lens.kind!r} lens. "
                        "Train one with `replab lens train --kind attention`.")


def head_top_tokens(lens: AttentionLens, model, prompts, *, k: int = 5, batch_size: int = 16) -> pd.DataFrame:
    """Each head's top-``k`` decoded tokens at the last position of every prompt.

    Returns:
        A tidy table, one row per (prompt, layer, head, rank): ``prompt`` (index), ``layer`` (block), ``head``,
        ``rank`` (0 = top), ``token_id``, ``token``, ``prob`` (under that head's lens alone).
    """
    _require_attention(lens)
    rows = []
    for start, per_block in _last_heads(lens, model, prompts, batch_size):
        for b, logits in per_block.items():
            top = torch.softmax(logits, -1).topk(k, -1)  # [n, H, k]
            for j in range(logits.shape[0]):
                for h in range(logits.shape[1]):
                    for r in range(k):
                        tid = int(top.indices[j, h, r])
                        rows.append((start + j, b, h, r, tid, model.tokenizer.decode([tid]), float(top.values[j, h, r])))
    return pd.DataFrame(rows, columns=["prompt", "layer", "head", "rank", "token_id", "token", "prob"])


def answer_ids(model, answers) -> torch.Tensor:
    """The first token of each expected completion (``" Paris"``) ``[n]``: what the model must predict next."""
    return torch.tensor([int(model.to_tokens(a, prepend_bos=False)[0, 0]) for a in answers])


def head_truth(lens: AttentionLens, model, prompts, *, answers=None, k: int = 10, batch_size: int = 16) -> pd.DataFrame:
    """How well each head's lens alone predicts the true next token at the last position of ``prompts``.

    Args:
        answers: the expected completions (default ``prompts.answers``); their first token is the truth.
        k: a head "carries" a prompt's fact when the true token is among its lens's top ``k``.

    Returns:
        One row per (layer, head): ``hit_rate`` (fraction of prompts with the truth in the top ``k``),
        ``rank`` (mean normalised rank of the truth, 0 = top, 1 = bottom), ``prob`` (its mean probability), ``n``.
    """
    _require_attention(lens)
    answers = answers if answers is not None else getattr(prompts, "answers", None)
    if answers is None:
        from replab.errors import DataError
        raise DataError("head_truth needs the true completions: a prompt set with answers, or answers=[...].")
    truth = answer_ids(model, answers)
    H, V = int(model.cfg.n_heads), int(model.cfg.d_vocab)
    stats = {b: torch.zeros(H, 3, dtype=torch.float64) for b in lens.layers()}  # hits, rank, prob
    n = 0
    for start, per_block in _last_heads(lens, model, prompts, batch_size):
        t = truth[start: start + next(iter(per_block.values())).shape[0]].to(next(iter(per_block.values())).device)
        for b, logits in per_block.items():
            true_logit = logits.gather(-1, t[:, None, None].expand(-1, H, 1))  # [n, H, 1]
            above = (logits > true_logit).sum(-1).double()  # tokens ranked strictly above the truth
            prob = torch.softmax(logits, -1).gather(-1, t[:, None, None].expand(-1, H, 1))[..., 0].double()
            stats[b] += torch.stack([(above < k).double().sum(0), (above / max(V - 1, 1)).sum(0), prob.sum(0)], -1).cpu()
        n += len(t)
    rows = [{"layer": b, "head": h, "hit_rate": float(s[h, 0] / max(n, 1)), "rank": float(s[h, 1] / max(n, 1)),
             "prob": float(s[h, 2] / max(n, 1)), "n": n} for b, s in stats.items() for h in range(H)]
    return pd.DataFrame(rows)


def head_facts(lens: AttentionLens, model, prompt_sets: dict, *, k: int = 10, batch_size: int = 16) -> pd.DataFrame:
    """Which heads carry which facts: ``{relation: PromptSet with answers}`` -> one row per (layer, head),
    one column per relation holding ``head_truth``'s ``hit_rate``."""
    table = None
    for name, prompts in prompt_sets.items():
        t = head_truth(lens, model, prompts, k=k, batch_size=batch_size)[["layer", "head", "hit_rate"]]
        t = t.rename(columns={"hit_rate": name})
        table = t if table is None else table.merge(t, on=["layer", "head"])
    return table
