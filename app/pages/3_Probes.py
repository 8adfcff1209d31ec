"""Probes: metric by layer per probe type with control and shuffled baselines, selectivity, MDL, causal check."""

import pandas as pd
import streamlit as st
from lib import ui

from replab import viz
from replab.probes import probe_figures

root = ui.page("Probes", "Probe sweeps written by `replab probe`: each probe type's cross-validated metric by layer "
                         "(error bars: std over folds) next to a control task (Hewitt & Liang: random labels per "
                         "word type) and shuffled labels; selectivity = task - control.")
index = ui.run_index(root)
path = ui.pick_run(index, "probe", "Probe run", key="probe_run")
with ui.guard():
    run = ui.probe_run(path)

metrics = run.info.get("metrics", {})
cols = st.columns(3)
layer = run.results.loc[run.results["hook"] == metrics.get("best_hook"), "layer"]
cols[0].metric("Best probe", f"{metrics.get('best_probe')}, layer {layer.iloc[0] if len(layer) else '?'}")
cols[1].metric(f"Its {metrics.get('metric', 'metric')}", f"{metrics.get('best_mean', float('nan')):.3f}")
sel = metrics.get("best_selectivity")
cols[2].metric("Its selectivity", "n/a" if sel is None else f"{sel:.3f}")
config = run.info.get("config", {})
st.caption(f"Best hook `{metrics.get('best_hook')}`. Store `{config.get('store')}`, target `{config.get('target')}`, "
           f"{config.get('cv')}-fold CV, model "
           f"`{(run.info.get('model') or {}).get('id') or config.get('sweep', {}).get('store_model')}`.")

probes = sorted(run.results["probe"].unique())
chosen = st.multiselect("Probe types", probes, default=probes, key="probe_types")
if not chosen:
    st.warning("Choose at least one probe type.")
    st.stop()
results = run.results[run.results["probe"].isin(chosen)]
mdl = run.mdl
with ui.guard():
    figures = probe_figures(results, mdl)
for fig in figures.values():
    fig.update_xaxes(dtick=1)  # layers are integers
st.plotly_chart(figures["metric_by_layer"], key="probe_metric")
if "selectivity_by_layer" in figures:
    st.plotly_chart(figures["selectivity_by_layer"], key="probe_selectivity")
else:
    st.info("This sweep has no control task, so no selectivity (re-run `replab probe` without --no-control).")
if "mdl_by_layer" in figures:
    st.plotly_chart(figures["mdl_by_layer"], key="probe_mdl")

with st.expander("Sweep table (results.csv)"):
    st.dataframe(results, hide_index=True, key="probe_results")
if run.best is not None:
    st.subheader("Best probe per hook")
    st.dataframe(run.best, hide_index=True, key="probe_best")

st.subheader("Causal check")
causal = run.causal
if causal is None:
    st.info("No causal check in this run. Re-run with `replab probe --causal` to ablate the best probe's direction "
            "in the model next to random directions of the same norm.")
else:
    with ui.guard():
        probe = causal.get("probe", {})
        mode = (causal.get("config") or {}).get("mode")
        verb = {"ablate": "Ablating", "steer": "Steering along"}.get(mode, "Ablating")
        st.caption(f"{verb} the direction of the {probe.get('probe')} probe at `{probe.get('hook')}` "
                   f"({causal['direction']['n']} prompts) vs {len(causal.get('random', []))} random directions.")
        st.plotly_chart(viz.causal_bars(causal), key="probe_causal")
        d = causal["direction"]
        keys = [k for k, v in d["delta"].items() if isinstance(v, (int, float))]
        random_mean = causal.get("random_mean_delta", {})
        st.dataframe(pd.DataFrame({"metric": keys, "clean": [d["clean"].get(k) for k in keys],
                                   "intervened": [d["intervened"].get(k) for k in keys],
                                   "change": [d["delta"][k] for k in keys],
                                   "change (random, mean)": [random_mean.get(k) for k in keys]}),
                     hide_index=True, key="probe_causal_table")
