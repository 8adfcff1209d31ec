"""Activations: a capture run's manifest, hooks, row metadata and a PCA of one hook."""

import pandas as pd
import streamlit as st
from lib import ui

from replab import viz

root = ui.page("Activations", "Activation stores written by `replab capture`: what was captured, from which model, "
                              "and how the rows of one hook spread on their first two principal components.")
index = ui.run_index(root)
path = ui.pick_run(index, "capture", "Capture run", key="acts_run")
with ui.guard():
    store = ui.store(path)
    meta = store.metadata

manifest = store.manifest
source = manifest.get("source") or {}
cols = st.columns(4)
cols[0].metric("Rows", f"{len(store):,}")
cols[1].metric("Hooks", len(store.hooks))
cols[2].metric("Positions", str(manifest.get("positions")))
cols[3].metric("dtype", str(manifest.get("dtype")))
st.caption(f"Model `{manifest.get('model')}` (weights {manifest.get('model_hash')}); source "
           f"`{source.get('name', source) if isinstance(source, dict) else source}`.")

a, b = st.columns([1, 2])
a.dataframe(pd.DataFrame({"hook": store.hooks, "d": [store.d(h) for h in store.hooks]}), hide_index=True,
            key="acts_hooks")
with b.expander("manifest.json"):
    st.json(manifest, expanded=False)

st.subheader("Rows")
shown = meta.head(1000)
st.caption(f"One row per stored activation ({len(meta):,} rows"
           + (", first 1,000 shown)." if len(meta) > 1000 else ")."))
st.dataframe(shown, hide_index=True, key="acts_metadata")

st.subheader("PCA")
c1, c2 = st.columns(2)
hook = c1.selectbox("Hook", store.hooks, index=len(store.hooks) - 1, key="acts_hook")
choices = [c for c in ("label", "target", "subject", "answer", "token_id", "position", "prompt_index")
           if c in meta.columns]
colour_by = c2.selectbox("Colour by", [*choices, "(none)"], key="acts_colour")
with ui.guard():
    proj = ui.pca(path, hook)
rows = meta.iloc[proj.rows]
where = rows["text"].str.slice(0, 60).map(repr) if "text" in rows else "prompt " + rows["prompt_index"].astype(str)
hover = [f"row {r}: {w} @ position {p}" for r, w, p in zip(proj.rows, where, rows["position"])]
colour = None if colour_by == "(none)" else rows[colour_by].reset_index(drop=True)
st.plotly_chart(viz.pca_scatter(proj.coords, proj.explained, colour, hover,
                                f"{hook}: {len(proj.rows):,} rows on PC1/PC2"), key="acts_pca")
if len(proj.rows) < len(store):
    st.caption(f"A seeded random sample of {len(proj.rows):,} of {len(store):,} rows.")
