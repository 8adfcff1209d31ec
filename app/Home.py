"""replab explorer, home page: the runs under the runs root and the world model's card.

Start it with ``replab app [--runs DIR]`` or ``streamlit run app/Home.py -- --runs DIR``.
Every page is a file in ``app/pages/``; adding one is adding a file.
"""

import streamlit as st
from lib import ui

from replab import viz

root = ui.page("replab explorer", "Run directories written by replab commands: captures, probe sweeps, SAEs and "
                                  "world-model evaluations. Pick a page on the left to look inside them.")

st.header("Runs")
with ui.guard():
    index = ui.run_index(root)
if index.empty:
    st.info(f"No run directories under `{root}` (a run directory holds a run.json). Make some with "
            "`replab demo`, or point the app elsewhere with `replab app --runs DIR`.")
else:
    kinds = sorted(index["kind"].unique())
    shown = st.multiselect("Kinds", kinds, default=kinds, key="home_kinds")
    table = index[index["kind"].isin(shown)]
    st.dataframe(table.drop(columns=["path", "problem"]), hide_index=True, key="home_runs",
                 column_config={"key_metrics": st.column_config.TextColumn("key metrics", width="large")})
    for _, row in table[table["problem"] != ""].iterrows():
        st.warning(f"**{row['name']}** ({row['status']}): {row['problem']}")

st.header("World model card")
cards = ui.world_cards(root)
if not cards:
    st.info("No world card yet: the shipped card (replab/world/card) is missing and no world-eval run is under the "
            f"runs root. Make one with `{ui.make_command('world-eval')}`.")
else:
    source = st.selectbox("Card", list(cards), key="home_card")
    with ui.guard():
        card = cards[source]
        relations, canonical = viz.card_tables(card)
        m = card.get("model", {})
        st.markdown(f"GPT-2-architecture model: {m.get('n_layer')} layers, d_model {m.get('d_model')}, "
                    f"{m.get('n_head')} heads, vocabulary {m.get('vocab_size')}, "
                    f"{m.get('n_params', 0) / 1e6:.2f}M parameters. Accuracy is greedy top-1.")
        st.dataframe(relations, hide_index=True, key="home_card_relations",
                     column_config={c: st.column_config.ProgressColumn(c, min_value=0, max_value=1, format="percent")
                                    for c in ("train accuracy", "held-out accuracy")})
        if not canonical.empty:
            st.subheader("Canonical prompts")
            st.dataframe(canonical, hide_index=True, key="home_card_canonical")
