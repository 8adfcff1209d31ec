"""Figures of the lenses (``replab.lenses``): quality by layer, a lens x prompt table, the attention-lens head grid."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from replab.viz.figures import _COLOURS, _LAYOUT, _position_labels

CURVE_METRICS = (("kl", "KL(model ‖ lens), nats"), ("ce", "cross-entropy, nats"), ("top1", "top-1 agreement"))


def lens_curves(tables: Mapping[str, pd.DataFrame]) -> go.Figure:
    """KL / CE / top-1 by layer, one line per lens (``name -> replab.lenses.evaluate`` table), side by side."""
    fig = make_subplots(rows=1, cols=len(CURVE_METRICS), subplot_titles=[t for _, t in CURVE_METRICS])
    for i, (name, df) in enumerate(tables.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        for col, (metric, _) in enumerate(CURVE_METRICS, 1):
            fig.add_trace(go.Scatter(x=df["layer"], y=df[metric], mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=col == 1, line={"color": colour},
                                     hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
            fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1, row=1, col=col)
    fig.update_layout(title="Lens quality by layer", **_LAYOUT)
    return fig


def lens_prompt_heatmap(table: pd.DataFrame, title: str) -> go.Figure:
    """Layer x position grid of ``replab.lenses.evaluate.prompt_table``: text = top token and its probability,
    colour = the lens's probability of the true next token (blank at the last position)."""
    colour = table.pivot(index="layer", columns="position", values="next_token_prob").sort_index()
    top = table.pivot(index="layer", columns="position", values="top_token").sort_index()
    prob = table.pivot(index="layer", columns="position", values="top_prob").sort_index()
    text = np.vectorize(lambda t, p: f"{t!r} {p:.2f}")(top.to_numpy(), prob.to_numpy())
    tokens = table[table["layer"] == table["layer"].min()].sort_values("position")["token"].tolist()
    last = int(table["layer"].max())
    fig = go.Figure(go.Heatmap(
        z=colour.to_numpy(), x=_position_labels(tokens),
        y=[f"layer {layer}" + (" (output)" if layer == last else "") for layer in colour.index],
        text=text, texttemplate="%{text}", colorscale="Greens", zmin=0, zmax=1, colorbar={"title": "p(next)"},
        hovertemplate="%{y}, position %{x}<br>top %{text}<br>p(true next token)=%{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="position: input token", yaxis_title="lens layer", **_LAYOUT)
    return fig


def head_grid(topk: pd.DataFrame, n_tokens: int = 3) -> go.Figure:
    """Block x head grid of one prompt's ``head_topk`` table: text = each head's top tokens, colour = top-1 prob."""
    first = topk[topk["rank"] == 1].pivot(index="block", columns="head", values="prob").sort_index()
    words = (topk[topk["rank"] <= n_tokens].sort_values("rank").groupby(["block", "head"])["token"]
             .agg(lambda t: " ".join(repr(w) for w in t)).unstack().reindex_like(first))
    fig = go.Figure(go.Heatmap(
        z=first.to_numpy(), x=[f"head {h}" for h in first.columns], y=[f"block {b}" for b in first.index],
        text=words.to_numpy(), texttemplate="%{text}", colorscale="Purples", zmin=0, colorbar={"title": "p(top)"},
        hovertemplate="%{y} %{x}<br>%{text}<br>p(top)=%{z:.3f}<extra></extra>"))
    fig.update_layout(title="Attention lens: each head's top tokens at the last position", xaxis_title="head",
                      yaxis_title="block", **_LAYOUT)
    return fig


def head_bar(topk: pd.DataFrame, block: int, head: int) -> go.Figure:
    """Bars of one head's top-k tokens (rows of ``head_topk`` for one prompt)."""
    rows = topk[(topk["block"] == block) & (topk["head"] == head)].sort_values("rank")
    fig = go.Figure(go.Bar(x=rows["prob"], y=[repr(t) for t in rows["token"]], orientation="h",
                           hovertemplate="%{y}: p=%{x:.4f}<extra></extra>"))
    fig.update_layout(title=f"Attention lens, block {block} head {head}: top tokens", xaxis_title="probability",
                      yaxis={"autorange": "reversed"}, **_LAYOUT)
    return fig
