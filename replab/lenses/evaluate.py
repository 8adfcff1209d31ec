"""``replab.lenses.evaluate``: per-layer KL, cross-entropy, top-1 agreement, entropy and prediction depth."""

from __future__ import annotations

import pandas as pd
import torch

from replab.lenses.base import Lens, final_hook
from replab.protocols import HookedModel


def _scores(logp: torch.Tensor, logq: torch.Tensor, top: torch.Tensor, has_next: torch.Tensor,
            nxt: torch.Tensor) -> torch.Tensor:
    """``[H, 4]`` sums of KL, next-token CE, top-1 agreement and entropy of ``logq`` ``[rows, H, V]``."""
    kl = (logp.exp()[:, None] * (logp[:, None] - logq)).sum((0, 2))
    ce = -logq[has_next].gather(2, nxt[has_next, None, None].expand(-1, logq.shape[1], 1)).sum((0, 2))
    agree = (logq.argmax(-1) == top[:, None]).sum(0)
    ent = -(logq.exp() * logq).sum((0, 2))
    return torch.stack([kl, ce, agree.to(kl.dtype), ent], -1).double().cpu()


@torch.no_grad()
def evaluate(lens: Lens, model: HookedModel, data, *, batch_size: int = 16, positions: str = "all", context: int | None = None,
             max_tokens: int | None = None, heads: bool = False, progress: bool = False) -> pd.DataFrame:
    """Score ``lens`` against the model's own output on ``data`` (anything ``run_batches`` reads).

    Returns:
        One row per lens layer: ``layer``, ``hook``, ``kl`` (mean KL(model || lens), nats), ``ce`` (cross-entropy
        of the next token, rows with one), ``top1`` (agreement of the lens's top token with the model's),
        ``entropy`` (of the lens distribution), ``depth_fraction`` (tokens whose prediction depth is at most
        this layer). With ``heads=True`` an attention lens adds one row per (block, head) after each block's row,
        scoring that head's lens alone (``head`` is the head index, NA on the summed lens's rows;
        ``depth_fraction`` NA on head rows). ``df.attrs``: ``prediction_depth`` (mean over tokens of the first layer from which the
        lens's top-1 stays the model's; ``n_layers`` when only the output agrees), ``tokens``, ``final_ce``.
    """
    from replab.models import run_batches

    layers = lens.layers()
    hooks = sorted({lens.input_hook(layer) for layer in layers} | {final_hook(model)})
    L = len(layers)
    sums = torch.zeros(L, 4, dtype=torch.float64)  # kl, ce, top1, entropy
    depth_hist = torch.zeros(L + 1, dtype=torch.float64)
    per_head = heads and lens.kind == "attention"
    H = int(model.cfg.n_heads)
    head_sums = torch.zeros(L, H, 4, dtype=torch.float64)
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
            if per_head:
                head_sums[i] += _scores(logp, torch.log_softmax(
                    lens.head_logits(fb.acts[lens.input_hook(layer)], layer).float(), -1), top, has_next, nxt)
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
    if per_head:
        df.insert(1, "head", pd.array([pd.NA] * L, dtype="Int64"))
        heads = pd.DataFrame([{"layer": layer, "head": h, "hook": df["hook"][i],
                               **dict(zip(("kl", "ce", "top1", "entropy"),
                                          (head_sums[i, h] / torch.tensor([n, n_ce, n, n]).clamp(min=1)).tolist())),
                               "depth_fraction": float("nan")} for i, layer in enumerate(layers) for h in range(H)])
        heads["head"] = heads["head"].astype("Int64")
        df = pd.concat([df, heads]).sort_values(["layer", "head"], na_position="first", kind="stable")
        df = df.reset_index(drop=True)
    df.attrs.update(prediction_depth=float((depth_hist * torch.arange(L + 1)).sum() / max(n, 1)), tokens=n,
                    final_ce=final_ce / max(n_ce, 1))
    return df


def _decode(model, ids) -> list[str]:
    return [model.tokenizer.decode([int(i)]) for i in ids]


@torch.no_grad()
def prompt_table(lens: Lens, model, text: str) -> pd.DataFrame:
    """Every lens layer at every position of ``text``, plus the model's output as layer ``n_layers``.

    Returns:
        One row per (layer, position): ``layer``, ``position``, ``token`` (the input token), ``top_token``,
        ``top_token_id``, ``top_prob``, ``next_token`` (the token that follows, ``None`` at the end), ``next_token_prob`` (its
        probability under the lens, NaN at the end). Layers are tuned-lens indices (0 = embeddings).

    Raises:
        DataError: an attention lens (it has no per-position residual reading; use ``head_topk``), an empty
        prompt or one longer than the model's context.
    """
    from replab.errors import DataError
    from replab.lenses.logit import LogitLens
    from replab.models import run_batches

    if lens.kind == "attention":
        raise DataError("prompt_table reads residual-stream lenses; for an attention lens use head_topk.")
    if not text:
        raise DataError("The prompt is empty; type some text.")
    tokens = model.to_tokens(text, truncate=False)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and tokens.shape[1] > n_ctx:
        raise DataError(f"The prompt is {tokens.shape[1]} tokens long; the model's context is {n_ctx} tokens. "
                        "Shorten it.")
    layers = [*lens.layers(), lens.n_layers]
    hooks = sorted({lens.input_hook(layer) for layer in lens.layers()} | {final_hook(model)})
    (fb,) = run_batches(model, tokens.cpu(), hooks, batch_size=1)
    ids = tokens[0].tolist()
    words = _decode(model, ids)
    following = torch.tensor(ids[1:] + [ids[-1]])
    frames = []
    for layer in layers:
        reader = lens if layer < lens.n_layers else LogitLens(model)
        probs = torch.softmax(reader(fb.acts[reader.input_hook(layer)], layer).float(), -1).cpu()
        top = probs.max(-1)
        nxt = probs[torch.arange(len(ids)), following].numpy().copy()
        nxt[-1] = float("nan")
        frames.append(pd.DataFrame({
            "layer": layer, "position": range(len(ids)), "token": words,
            "top_token": _decode(model, top.indices.tolist()), "top_token_id": top.indices.numpy(),
            "top_prob": top.values.numpy(), "next_token": words[1:] + [None], "next_token_prob": nxt}))
    return pd.concat(frames, ignore_index=True)


def _head_probs(lens, model, data, batch_size: int):
    """Yield ``(batch, {block: [rows, n_heads, d_vocab] probabilities})`` at each prompt's last position."""
    from replab.errors import DataError
    from replab.models import run_batches

    if lens.kind != "attention":
        raise DataError(f"Per-head tables need an attention lens; got a {lens.kind!r} lens.")
    hooks = [lens.input_hook(b) for b in lens.layers()]
    for fb in run_batches(model, data, hooks, positions="last", batch_size=batch_size):
        yield fb, {b: torch.softmax(lens.head_logits(fb.acts[lens.input_hook(b)], b).float(), -1)
                   for b in lens.layers()}


@torch.no_grad()
def head_topk(lens: Lens, model, data, *, k: int = 5, batch_size: int = 16) -> pd.DataFrame:
    """Each attention head's top-``k`` decoded tokens at the last position of every prompt in ``data``.

    Returns:
        One row per (prompt, block, head, rank): ``prompt`` (index), ``block``, ``head``, ``rank`` (1-based),
        ``token_id``, ``token``, ``prob`` (softmax of that head's lens logits alone).
    """
    rows = []
    for fb, probs in _head_probs(lens, model, data, batch_size):
        for block, p in probs.items():
            top = p.topk(min(k, p.shape[-1]), -1)  # [rows, H, k]
            for r in range(p.shape[0]):
                for h in range(p.shape[1]):
                    ids = top.indices[r, h].tolist()
                    for rank, (i, v) in enumerate(zip(ids, top.values[r, h].tolist()), 1):
                        rows.append((fb.start + int(fb.item[r]), block, h, rank, i, v))
    df = pd.DataFrame(rows, columns=["prompt", "block", "head", "rank", "token_id", "prob"])
    df.insert(5, "token", _decode(model, df["token_id"]) if len(df) else [])
    return df


@torch.no_grad()
def head_facts(lens: Lens, model, prompts, *, k: int = 10, batch_size: int = 32) -> pd.DataFrame:
    """Which heads carry which facts: per head, the fraction of ``prompts`` whose true object is in its top-``k``.

    ``prompts`` is a ``PromptSet`` with ``answers`` (e.g. ``replab.datasets.load("world:capital")``); the
    object is the first token of each answer.

    Returns:
        One row per (block, head): ``block``, ``head``, ``fraction`` (answer in the head's top-k),
        ``mean_rank`` (1-based rank of the answer under the head's lens), ``n`` prompts.
    """
    from replab.errors import DataError

    answers = getattr(prompts, "answers", None)
    if not answers:
        raise DataError("head_facts needs a prompt set with answers, e.g. replab.datasets.load('world:capital').")
    target = torch.tensor([model.to_tokens(a, prepend_bos=False)[0, 0].item() for a in answers])
    hits: dict[tuple[int, int], list[float]] = {}
    for fb, probs in _head_probs(lens, model, prompts, batch_size):
        t = target[fb.start + fb.item.cpu()]
        for block, p in probs.items():
            p = p.cpu()
            mine = p.gather(-1, t[:, None, None].expand(-1, p.shape[1], 1))  # [rows, H, 1]
            rank = 1 + (p > mine).sum(-1)  # [rows, H]
            for h in range(p.shape[1]):
                acc = hits.setdefault((block, h), [0.0, 0.0, 0.0])
                acc[0] += float((rank[:, h] <= k).sum())
                acc[1] += float(rank[:, h].sum())
                acc[2] += rank.shape[0]
    return pd.DataFrame([{"block": b, "head": h, "fraction": a / n, "mean_rank": r / n, "n": int(n)}
                         for (b, h), (a, r, n) in sorted(hits.items())])
