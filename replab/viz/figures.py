"""Plotly figures for the app's views, each built from a tidy table or a run artifact.

Probe sweeps reuse ``replab.probes.probe_figures`` (the same figures ``replab probe`` saves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from replab.probes.figures import COLOURS as _COLOURS

_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 60, "b": 50}}


def _position_labels(tokens: Sequence[str]) -> list[str]:
    return [f"{i}: {t!r}"[: 24] for i, t in enumerate(tokens)]


def lens_heatmap(lens: pd.DataFrame) -> go.Figure:
    """Layer x position heatmap of a ``logit_lens`` table: colour = top-token probability, text = top token."""
    grid = lens.pivot(index="layer", columns="position", values="top_prob").sort_index()
    words = lens.pivot(index="layer", columns="position", values="top_token").sort_index()
    tokens = lens[lens["layer"] == lens["layer"].min()].sort_values("position")["token"].tolist()
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=_position_labels(tokens), y=[f"layer {layer}" for layer in grid.index],
        text=words.to_numpy(), texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        colorbar={"title": "p(top)"},
        hovertemplate="%{y}, position %{x}<br>top token %{text!r}: p=%{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title="Logit lens: each layer's residual stream decoded with ln_final + unembed",
                      xaxis_title="position: input token", yaxis_title="resid_post of", **_LAYOUT)
    return fig


def topk_bar(topk: pd.DataFrame) -> go.Figure:
    """Horizontal bars of a ``next_token_topk`` table (most likely at the top)."""
    fig = go.Figure(go.Bar(x=topk["prob"], y=[repr(t) for t in topk["token"]], orientation="h",
                           hovertemplate="%{y}: p=%{x:.4f}<extra></extra>"))
    fig.update_layout(title="Next-token probabilities", xaxis_title="probability",
                      yaxis={"autorange": "reversed"}, **_LAYOUT)
    return fig


def attention_heatmap(tokens: Sequence[str], pattern: np.ndarray, layer: int, head: int) -> go.Figure:
    """Query x key heatmap of one head's attention ``pattern`` ``[seq, seq]``."""
    labels = _position_labels(tokens)
    fig = go.Figure(go.Heatmap(z=pattern, x=labels, y=labels, colorscale="Viridis", zmin=0, zmax=1,
                               colorbar={"title": "attention"},
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Attention pattern, layer {layer} head {head}", xaxis_title="key (attended to)",
                      yaxis={"title": "query", "autorange": "reversed"}, **_LAYOUT)
    return fig


def pca_scatter(coords: np.ndarray, explained: Sequence[float], colour: pd.Series | None, hover: Sequence[str],
                title: str) -> go.Figure:
    """2-D scatter of PCA ``coords`` ``[n, 2]``: one trace per class for a categorical ``colour``,
    a colour scale for a numeric one, a single trace without."""
    axes = {"xaxis_title": f"PC1 ({explained[0]:.1%} of variance)",
            "yaxis_title": f"PC2 ({explained[1]:.1%} of variance)"}
    fig = go.Figure()
    hover = np.asarray(hover, dtype=object)
    if colour is None:
        fig.add_trace(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", text=hover, name="rows"))
    elif pd.api.types.is_numeric_dtype(colour) and colour.nunique() > 12:
        fig.add_trace(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", text=hover, name=str(colour.name),
                                   marker={"color": colour.to_numpy(), "colorscale": "Viridis", "showscale": True,
                                           "colorbar": {"title": str(colour.name)}}))
    else:
        values = colour.astype(str).to_numpy()
        for value in sorted(set(values)):
            keep = values == value
            fig.add_trace(go.Scattergl(x=coords[keep, 0], y=coords[keep, 1], mode="markers", text=hover[keep],
                                       name=value))
    fig.update_traces(marker_size=7, marker_opacity=0.75, hovertemplate="%{text}<extra>%{fullData.name}</extra>")
    fig.update_layout(title=title, legend_title=None if colour is None else str(colour.name), **axes, **_LAYOUT)
    return fig


def sae_comparison(table: pd.DataFrame, metrics: Sequence[str]) -> go.Figure:
    """One panel per metric, one bar per SAE run (a colour per run, named ``architecture (run)`` in the legend)."""
    metrics = [m for m in metrics if m in table and table[m].notna().any()]
    fig = make_subplots(rows=1, cols=max(1, len(metrics)), subplot_titles=metrics)
    for i, row in enumerate(table.itertuples()):
        label = f"{row.architecture} ({row.run})"
        for col, metric in enumerate(metrics, start=1):
            fig.add_trace(go.Bar(x=[label], y=[getattr(row, metric)], name=label, legendgroup=label,
                                 showlegend=col == 1, marker_color=_COLOURS[i % len(_COLOURS)],
                                 hovertemplate=f"%{{x}}<br>{metric}=%{{y:.4g}}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title="SAE metrics by run (FVU, dead and dense: lower is better; CE recovered: higher)",
                      legend={"orientation": "h", "y": -0.1}, **_LAYOUT)
    return fig


def activation_histogram(latent: dict[str, Any]) -> go.Figure:
    """Bars of a latent's activation histogram (``histogram.edges`` / ``histogram.counts``)."""
    edges = np.asarray(latent["histogram"]["edges"], dtype=float)
    counts = latent["histogram"]["counts"]
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges),
                           hovertemplate="activation %{x:.3g}<br>%{y} rows<extra></extra>"))
    fig.update_layout(title=f"Latent {latent.get('index', '')}: activations when it fires "
                            f"(frequency {latent['frequency']:.2%})",
                      xaxis_title="activation", yaxis_title="rows", bargap=0, **_LAYOUT)
    return fig


def logit_effects(latent: dict[str, Any]) -> go.Figure:
    """Tokens the latent's decoder direction promotes (positive) and suppresses (negative), via ``W_U``."""
    fig = go.Figure()
    for key, name, colour in (("top_positive_logits", "promoted", "#2ca02c"),
                              ("top_negative_logits", "suppressed", "#d62728")):
        rows = latent.get(key) or []
        fig.add_trace(go.Bar(x=[r["value"] for r in rows], y=[repr(r["token"]) for r in rows], orientation="h",
                             name=name, marker_color=colour, hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    fig.update_layout(title="Logit effects: decoder direction x W_U", xaxis_title="logit change per unit activation",
                      yaxis={"autorange": "reversed"}, barmode="overlay", **_LAYOUT)
    return fig


def causal_bars(causal: dict[str, Any]) -> go.Figure:
    """Change in each behaviour metric when the probe direction is ablated vs each random direction."""
    keys = [k for k, v in causal["direction"]["delta"].items() if isinstance(v, (int, float))]
    fig = go.Figure(go.Bar(x=keys, y=[causal["direction"]["delta"][k] for k in keys], name="probe direction"))
    fig.add_trace(go.Bar(x=keys, y=[causal.get("random_mean_delta", {}).get(k) for k in keys],
                         name="random directions (mean)"))
    for i, effect in enumerate(causal.get("random", [])):
        fig.add_trace(go.Scatter(x=keys, y=[effect["delta"].get(k) for k in keys], mode="markers",
                                 marker={"color": "black", "symbol": "x"}, name="one random direction",
                                 showlegend=i == 0))
    mode = (causal.get("config") or {}).get("mode", "ablate")
    fig.update_layout(title=f"Causal check: change when the direction is {mode}d (intervened - clean)",
                      yaxis_title="change", barmode="group", **_LAYOUT)
    return fig
