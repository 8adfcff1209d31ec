"""Per-latent feature analysis written to a run directory for the app.

Layout (documented in docs/saes.md)::

    features/summary.json     every latent: index, frequency, mean/max activation; for the
                              analysed ones also the top +/- logit tokens
    features/latent_<i>.json  an analysed latent: top-activating contexts (token window with
                              per-token activations), 50-bin activation histogram, logit effects
    figures/feature_frequency.json   histogram of log10 firing frequency

Only the ``top_n`` most frequently firing latents get a ``latent_<i>.json``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from replab.runs import Run
from replab.saes.base import SAE
from replab.saes.data import Rows
from replab.saes.evaluate import resolve_rows


@torch.no_grad()
def _encode_columns(sae: SAE, x: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
    acts = sae.encode(x).float().cpu()
    return acts if columns is None else acts[:, columns]


@torch.no_grad()
def _scan(sae: SAE, source: Rows, n_contexts: int, batch_size: int, max_rows: int | None) -> dict[str, Any]:
    """One pass: firing counts, activation sums and maxima, and the top-``n_contexts`` rows per latent."""
    d = sae.d_sae
    counts = torch.zeros(d, dtype=torch.long)
    sums = torch.zeros(d, dtype=torch.float64)
    maxes = torch.zeros(d)
    top_vals = torch.full((d, n_contexts), -math.inf)
    top_rows = torch.full((d, n_contexts), -1, dtype=torch.long)
    chunk = max(1, min(batch_size, 2**22 // d))  # bounds the [d_sae, chunk] candidate matrix
    n = 0
    for start, x in source.chunks(chunk, max_rows):
        acts = _encode_columns(sae, x)
        counts += (acts > 0).sum(0)
        sums += acts.double().sum(0)
        maxes = torch.maximum(maxes, acts.max(0).values)
        idx = torch.arange(start, start + acts.shape[0]).expand(d, -1)
        values, pick = torch.cat([top_vals, acts.T], 1).topk(n_contexts, dim=1)
        top_vals, top_rows = values, torch.cat([top_rows, idx], 1).gather(1, pick)
        n += acts.shape[0]
    return {"n": n, "counts": counts, "sums": sums, "maxes": maxes, "top_vals": top_vals, "top_rows": top_rows}


@torch.no_grad()
def _histograms(sae, source, latents, maxes, n_bins, batch_size, max_rows) -> torch.Tensor:
    """``[len(latents), n_bins]`` counts of positive activations on ``[0, max]`` per latent."""
    S = len(latents)
    hist = torch.zeros(S * n_bins, dtype=torch.long)
    top = maxes.clamp_min(1e-12)
    offsets = torch.arange(S) * n_bins
    for _, x in source.chunks(batch_size, max_rows):
        acts = _encode_columns(sae, x, latents)
        bins = (acts / top * n_bins).floor().long().clamp(0, n_bins - 1) + offsets
        active = acts > 0
        hist.index_add_(0, bins[active], torch.ones(int(active.sum()), dtype=torch.long))
    return hist.reshape(S, n_bins)


class _Tokens:
    """Token id -> display string with the model's tokenizer (``#id`` without one), cached."""

    def __init__(self, model) -> None:
        self.tokenizer = getattr(model, "tokenizer", None) if model is not None else None
        self.cache: dict[int, str] = {}

    def __call__(self, ids) -> list[str]:
        out = []
        for i in (int(t) for t in ids):
            if i not in self.cache:
                self.cache[i] = self.tokenizer.decode([i]) if self.tokenizer is not None else f"#{i}"
            out.append(self.cache[i])
        return out


def _windows(source: Rows, rows: list[int], window: int) -> list[dict[str, Any]]:
    """For each store row, the rows of the same prompt within ``window`` positions (those stored)."""
    import pandas as pd

    meta = source.metadata
    if meta is None or not {"prompt_index", "position"} <= set(meta.columns):
        return [{"row": r, "rows": [r]} for r in rows]
    lookup = pd.Series(np.arange(len(meta)), index=pd.MultiIndex.from_arrays([meta["prompt_index"], meta["position"]]))
    lookup = lookup[~lookup.index.duplicated()]
    out = []
    for r in rows:
        p, pos = int(meta["prompt_index"].iat[r]), int(meta["position"].iat[r])
        wanted = pd.MultiIndex.from_tuples([(p, q) for q in range(pos - window, pos + window + 1)])
        found = lookup.reindex(wanted).dropna().astype(int).tolist()
        if r not in found:  # a duplicated (prompt, position) pair: keep the row that fired
            found = sorted({*found, r}, key=lambda k: int(meta["position"].iat[k]))
        out.append({"row": r, "rows": found, "prompt_index": p, "position": pos})
    return out


@torch.no_grad()
def _logit_effects(sae: SAE, model, latents: torch.Tensor, n: int) -> tuple[torch.Tensor, ...] | None:
    """Top/bottom ``n`` of ``W_dec[latent] @ W_U`` (values and token ids), when the hook is d_model wide."""
    W_U = getattr(model, "W_U", None) if model is not None else None
    if W_U is None or W_U.shape[0] != sae.d_in:
        return None
    effects = sae.W_dec[latents].detach().float().cpu() @ W_U.detach().float().cpu()
    n = min(n, effects.shape[1])
    top, bottom = effects.topk(n, dim=1), effects.topk(n, dim=1, largest=False)
    return top.values, top.indices, bottom.values, bottom.indices


def _open_run(out, sae: SAE, source: Rows) -> tuple[Run, bool]:
    if isinstance(out, Run):
        return out, False
    from pathlib import Path

    from replab.runs import RUN_FILE

    if (Path(out) / RUN_FILE).is_file():
        return Run.open(out, require_complete=False), False
    config = {"architecture": sae.architecture, "sae": sae.cfg.to_dict(), "data": source.describe()}
    return Run.create(out, "sae-features", config), True


def analyze_features(
    sae: SAE,
    data,
    *,
    out: str | os.PathLike | Run,
    hook: str | None = None,
    model=None,
    top_n: int = 256,
    n_contexts: int = 10,
    window: int = 8,
    n_bins: int = 50,
    n_logits: int = 10,
    batch_size: int = 4096,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Write per-latent statistics, contexts, histograms and logit effects to ``out``.

    Args:
        sae: the SAE (takes raw activations).
        data: ActivationStore (contexts come from its metadata ``prompt_index``/``position``/
            ``token_id``) or a ``[n, d_in]`` tensor (contexts are then bare row numbers).
        out: run directory (an existing SAE run, or a new ``"sae-features"`` run) or a ``Run``.
        hook: store hook (default: the SAE's ``metadata.hook_name``).
        model: optional model: decodes tokens with its tokenizer and gives logit effects
            (decoder row times ``W_U``, no final LayerNorm).
        top_n: analyse the ``top_n`` most frequently firing latents.
        n_contexts: top-activating contexts kept per latent.
        window: tokens either side of the activating token.
        n_bins: activation histogram bins on ``[0, max activation]``.
        n_logits: tokens per side of the logit effects.
        batch_size: rows per encoding batch.
        max_rows: analyse only the first ``max_rows`` rows.

    Returns:
        The ``features/summary.json`` content.
    """
    source = resolve_rows(sae, data, hook)
    run, owns = _open_run(out, sae, source)
    sae.eval()
    scan = _scan(sae, source, n_contexts, batch_size, max_rows)
    n, counts = scan["n"], scan["counts"]
    frequency = counts.double() / n
    mean_act = torch.where(counts > 0, scan["sums"] / counts.clamp_min(1), torch.zeros_like(scan["sums"]))
    firing = int((counts > 0).sum())
    latents = counts.argsort(descending=True, stable=True)[: min(top_n, firing)]
    hist = _histograms(sae, source, latents, scan["maxes"][latents], n_bins, batch_size, max_rows)
    logits = _logit_effects(sae, model, latents, n_logits)
    tokens = _Tokens(model)

    contexts = {}
    for slot, i in enumerate(latents.tolist()):
        keep = scan["top_vals"][i] > 0
        contexts[i] = _windows(source, scan["top_rows"][i][keep].tolist(), window)
    needed = np.unique(np.array([r for ctxs in contexts.values() for c in ctxs for r in c["rows"]], dtype=np.int64))
    window_acts = torch.cat([_encode_columns(sae, source.take(needed[j : j + batch_size]), latents)
                             for j in range(0, len(needed), batch_size)]) if len(needed) else torch.zeros(0, len(latents))
    where = {int(r): k for k, r in enumerate(needed)}
    meta = source.metadata
    token_ids = meta["token_id"].to_numpy() if meta is not None and "token_id" in meta.columns else None

    def logit_list(values, ids, slot):
        return [{"token": t, "token_id": int(k), "value": float(v)}
                for t, k, v in zip(tokens(ids[slot].tolist()), ids[slot].tolist(), values[slot].tolist())]

    entries = []
    analysed = {i: slot for slot, i in enumerate(latents.tolist())}
    for i in range(sae.d_sae):
        entry = {"index": i, "frequency": float(frequency[i]), "mean_activation": float(mean_act[i]),
                 "max_activation": float(scan["maxes"][i]), "analysed": i in analysed}
        if i in analysed and logits is not None:
            entry["top_positive_logits"] = logit_list(logits[0], logits[1], analysed[i])
            entry["top_negative_logits"] = logit_list(logits[2], logits[3], analysed[i])
        entries.append(entry)

    for i, slot in analysed.items():
        ctx_out = []
        for c in contexts[i]:
            acts = [float(window_acts[where[r], slot]) for r in c["rows"]]
            ids = [int(token_ids[r]) for r in c["rows"]] if token_ids is not None else []
            ctx_out.append({k: c[k] for k in ("row", "prompt_index", "position") if k in c}
                           | {"tokens": tokens(ids), "token_ids": ids, "activations": acts, "max": max(acts),
                              "center": c["rows"].index(c["row"])})
        edges = torch.linspace(0, float(scan["maxes"][i]), n_bins + 1).tolist()
        run.write_json(f"features/latent_{i}.json", {**entries[i], "contexts": ctx_out,
                                                       "histogram": {"edges": edges, "counts": hist[slot].tolist()}})

    summary = {"architecture": sae.architecture, "hook": source.hook, "n_rows": n, "d_sae": sae.d_sae,
               "n_analysed": len(analysed), "top_n": top_n, "window": window, "n_bins": n_bins,
               "analysed": latents.tolist(), "logit_effects": logits is not None,
               "dead_fraction": float((counts == 0).double().mean()), "latents": entries}
    run.write_json("features/summary.json", summary)
    run.write_figure("feature_frequency", _frequency_figure(frequency, sae.architecture))
    if owns:
        run.finish({"features_analysed": len(analysed)})
    return summary


def _frequency_figure(frequency: torch.Tensor, architecture: str):
    import plotly.graph_objects as go

    alive = frequency[frequency > 0]
    fig = go.Figure(go.Histogram(x=torch.log10(alive).tolist(), nbinsx=50))
    fig.update_layout(
        title=f"{architecture} SAE: latent firing frequency ({int((frequency == 0).sum())} never fire)",
        xaxis_title="log10 firing frequency", yaxis_title="latents",
    )
    return fig
