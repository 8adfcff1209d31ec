"""Plotly figures of LRE sweeps: faithfulness by subject layer (one line per β), causality by rank (one line per layer)."""

from __future__ import annotations

from collections import Counter


def sweep_figures(rows: list[dict], relation: str) -> dict:
    """``{"faithfulness_by_layer": fig, "causality_by_rank": fig}`` from ``replab.relations.sweep`` rows."""
    import plotly.graph_objects as go

    faith = go.Figure()
    for beta in sorted({r["beta"] for r in rows if r["beta"] is not None}):
        pts = [r for r in rows if r["beta"] == beta]
        faith.add_trace(go.Scatter(x=[r["layer"] for r in pts], y=[r["faithfulness"] for r in pts],
                                   mode="lines+markers", name=f"β={beta:g}"))
    faith.update_layout(title=f"{relation}: LRE faithfulness by subject layer (0 = embedding output)",
                        xaxis_title="subject layer", yaxis_title="faithfulness (recall@1)", yaxis_range=[0, 1.05])
    caus = go.Figure()
    for layer in sorted({r["layer"] for r in rows if r["rank"] is not None}):
        pts = [r for r in rows if r["rank"] is not None and r["layer"] == layer]
        caus.add_trace(go.Scatter(x=[r["rank"] for r in pts], y=[r["causality"] for r in pts],
                                  mode="lines+markers", name=f"layer {layer}"))
    caus.update_layout(title=f"{relation}: LRE causality by rank of the pseudo-inverse",
                       xaxis_title="rank", yaxis_title="causality (edit success)", yaxis_range=[0, 1.05])
    return {"faithfulness_by_layer": faith, "causality_by_rank": caus}


# Hernandez et al. 2023, Table/Figure 3: mean over relation categories, GPT-J (GPT-2-XL, LLaMA-13B in docs)
PAPER_GPTJ = {"factual": (0.64, 0.72), "linguistic": (0.83, 0.92), "commonsense": (0.78, 0.88), "bias": (0.91, 0.98)}


def bars_vs_paper(rows: list[dict]):
    """Faithfulness and causality per relation (``{"relation", "kind", "faithfulness", "causality"}``, and
    ``"run"``, which names the bars of a relation that several runs measured) next to the paper's GPT-J
    number for the relation's category (dashed markers)."""
    import plotly.graph_objects as go

    counts = Counter(r["relation"] for r in rows)
    names = [r["relation"] if counts[r["relation"]] == 1 or not r.get("run") else f"{r['relation']} ({r['run']})"
             for r in rows]
    fig = go.Figure()
    for metric, i in (("faithfulness", 0), ("causality", 1)):
        fig.add_trace(go.Bar(x=names, y=[r.get(metric) for r in rows], name=metric))
        ref = [PAPER_GPTJ.get(r.get("kind") or "", (None, None))[i] for r in rows]
        fig.add_trace(go.Scatter(x=names, y=ref, mode="markers", marker_symbol="line-ew-open", marker_size=28,
                                 name=f"paper GPT-J {metric} (same category)"))
    fig.update_layout(barmode="group", title="LRE faithfulness and causality per relation vs Hernandez et al. (GPT-J)",
                      yaxis_range=[0, 1.05], yaxis_title="rate")
    return fig
