"""Plotly figures of a probe sweep, built from the tidy table alone (the app reuses this).

One line per (probe, hook site) with fold-std error bars for the task; control and shuffled
baselines as dashed lines in the same colour. A "site" is the hook name with its layer
replaced by ``*`` (``blocks.*.hook_resid_post``), so stores holding several hook types per
layer get one line each.
"""

from __future__ import annotations

import pandas as pd

from replab.models.hooks import hook_site

_DASH = {"task": "solid", "control": "dash", "shuffled": "dot"}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _with_x(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    t["site"] = t["hook"].map(hook_site)
    # hooks outside the blocks (embeddings) sit left of layer 0
    t["x"] = t["layer"].astype(float).fillna(-1.0)
    return t.sort_values("x")


def _lines(table: pd.DataFrame, value: str, error: str | None, tasks: tuple[str, ...], title: str, ytitle: str):
    import plotly.graph_objects as go

    t = _with_x(table)
    fig = go.Figure()
    multi_site = t["site"].nunique() > 1
    for i, ((probe, site), g) in enumerate(t.groupby(["probe", "site"], sort=False)):
        colour = COLOURS[i % len(COLOURS)]
        label = f"{probe} ({site})" if multi_site else probe
        for task in tasks:
            s = g[g["task"] == task]
            if s.empty or s[value].isna().all():
                continue
            fig.add_trace(go.Scatter(
                x=s["x"], y=s[value], mode="lines+markers", name=f"{label}: {task}" if len(tasks) > 1 else label,
                line={"color": colour, "dash": _DASH[task]}, opacity=1.0 if task == "task" else 0.6,
                error_y={"type": "data", "array": s[error], "visible": True} if error and task == "task" else None,
                customdata=s[["hook"]], hovertemplate="%{customdata[0]}<br>%{y:.3f}<extra>%{fullData.name}</extra>",
            ))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title=ytitle, template="plotly_white",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def probe_figures(table: pd.DataFrame, mdl: pd.DataFrame | None = None) -> dict:
    """Figures of a sweep table (and optional MDL table), keyed by the file name they are saved under.

    Returns:
        ``{"metric_by_layer": fig, "selectivity_by_layer": fig[, "mdl_by_layer": fig]}``;
        the selectivity figure is present when the table has control rows.
    """
    metric = ", ".join(table["metric"].unique())
    figs = {"metric_by_layer": _lines(table, "mean", "std", ("task", "control", "shuffled"),
                                      f"Probe {metric} by layer (error bars: std over folds)", metric)}
    if "selectivity" in table and table["selectivity"].notna().any():
        figs["selectivity_by_layer"] = _lines(table, "selectivity", "selectivity_std", ("task",),
                                              "Selectivity (task - control) by layer", f"{metric} difference")
    if mdl is not None and not mdl.empty:
        figs["mdl_by_layer"] = _lines(mdl.assign(metric="compression"), "compression", None, ("task", "control"),
                                      "MDL compression (uniform codelength / online codelength) by layer",
                                      "compression")
    return figs
