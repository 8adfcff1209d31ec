"""SAEs: metrics side by side across runs, and a feature browser (contexts, histogram, logit effects)."""

import pandas as pd
import streamlit as st
from lib import ui

from replab import viz

root = ui.page("SAEs", "Sparse autoencoders trained by `replab train-sae`: reconstruction (FVU), sparsity (L0), "
                       "dead (never fire) and dense (fire on >10% of rows) latents, and CE loss recovered when the "
                       "SAE is spliced into the model.")
index = ui.run_index(root)
runs = index[index["kind"] == "sae"]

st.header("Compare runs")
names = runs["name"].tolist()
complete = runs.loc[runs["problem"] == "", "name"].tolist()
chosen = st.multiselect("Runs", names, default=complete, key="sae_compare")
rows = []
for name in chosen:
    with ui.guard(stop=False):
        rows.append(ui.sae_summary(runs.loc[runs["name"] == name, "path"].iloc[0], name))
if rows:
    table = pd.DataFrame(rows)
    st.dataframe(table.drop(columns=["path"]), hide_index=True, key="sae_metrics")
    unevaluated = table[table[list(viz.SAE_METRICS)].isna().all(axis=1)]
    if not unevaluated.empty:  # saes.train(..., out=...) writes training metrics only
        st.info(f"Not evaluated (training metrics only): {', '.join(unevaluated['run'])}. Evaluate one with "
                "`replab eval-sae --sae RUN_DIR --store STORE` (or `saes.evaluate`) to compare it here.")
    if len(unevaluated) < len(table):
        st.plotly_chart(viz.sae_comparison(table.drop(unevaluated.index),
                                           ("fvu", "l0", "dead_fraction", "dense_fraction", "ce_recovered")),
                        key="sae_compare_chart")
elif not names:
    st.info(f"No sae runs under `{root}` yet. Make one with:\n\n```\n{ui.make_command('sae')}\n```")

st.header("Feature browser")
path = ui.pick_run(index, viz.FEATURE_KINDS, "SAE run", key="sae_run")
with ui.guard():
    features = ui.feature_table(path)
if features.empty:
    st.info("No latent of this SAE fired on the analysed rows, so there is nothing to browse.")
    st.stop()

c1, c2 = st.columns([2, 1])
query = c1.text_input("Search latents by token", key="sae_search", placeholder="e.g. Paris",
                      help="Exact token, case-insensitive, surrounding spaces ignored.")
column = c2.radio("Token is one it", ["fires on", "promotes"], horizontal=True, key="sae_search_in")
hits = viz.find_latents(features, query, "top_tokens" if column == "fires on" else "top_logits")
if hits.empty:
    st.warning(f"No analysed latent {column} {query!r}. Try another token or clear the search.")
    st.stop()
described = {int(r.latent): f"latent {r.latent}: fires on {', '.join(map(repr, r.top_tokens[:3]))} "
                            f"(frequency {r.frequency:.2%})" for r in hits.itertuples()}
latent = st.selectbox(f"Latent ({len(hits)} of {len(features)} analysed latents, most frequent first)",
                      list(described), format_func=described.get, key="sae_latent")
with ui.guard():
    data = ui.latent(path, latent)

m = st.columns(3)
m[0].metric("Firing frequency", f"{data['frequency']:.3%}")
m[1].metric("Mean activation (when firing)", f"{data.get('mean_activation', float('nan')):.4g}")
m[2].metric("Max activation", f"{data.get('max_activation', float('nan')):.4g}")

st.subheader("Top-activating contexts")
contexts = data["contexts"]
scale = max([c["max"] for c in contexts] or [0.0])
if contexts:
    st.html("".join(viz.token_spans(c["tokens"], c["activations"], scale, c["center"]) for c in contexts))
    st.dataframe(pd.DataFrame({
        "activation": [c["max"] for c in contexts],
        "token": [c["tokens"][c["center"]] if c["tokens"] else "" for c in contexts],
        "context": ["".join(c["tokens"]) for c in contexts],
        "prompt": [c.get("prompt_index") for c in contexts],
        "position": [c.get("position") for c in contexts],
    }), hide_index=True, key="sae_contexts")
else:
    st.info("No stored context for this latent.")

a, b = st.columns(2)
a.plotly_chart(viz.activation_histogram(data), key="sae_histogram")
if data.get("top_positive_logits"):
    b.plotly_chart(viz.logit_effects(data), key="sae_logits")
else:
    b.info("No logit effects: the features were analysed without a model (or the hook is not d_model wide).")
