"""Relations: LRE faithfulness and causality per relation vs the paper, sweep curves, and a live edit."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from lib import ui

from replab import viz
from replab.relations import load, world
from replab.relations.edit import edit_topk
from replab.relations.figures import bars_vs_paper
from replab.relations.runkind import read_lre
from replab.runs import Run

root = ui.page("Relations", "Linear relational embeddings written by `replab relations fit|sweep` (Hernandez et al. "
                            "2023): faithfulness = the LRE's decoded object matches on prompts the model answers; "
                            "causality = the rank-r edit W_r⁺(z′ − z) at the subject token flips the model's answer.")
index = ui.run_index(root)
runs = index[index["kind"] == "relation"]
if not runs.empty:
    rows = []
    for name, p in zip(runs["name"], runs["path"]):
        with ui.guard(stop=False):  # one unreadable run does not hide the others
            m = Run.open(p).info.get("metrics", {})
            rows.append({"run": name, "relation": m.get("relation"), "kind": m.get("kind") or "factual",
                         "faithfulness": m.get("faithfulness"), "causality": m.get("causality"),
                         "layer": m.get("subject_layer"), "n_correct": m.get("n_correct"), "n_test": m.get("n_test")})
    st.plotly_chart(bars_vs_paper(rows), key="rel_bars")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="rel_table")

path = ui.pick_run(index, "relation", "Relation run", key="relation_run")
with ui.guard():
    run = Run.open(path)
    lre = read_lre(run)
m = run.info.get("metrics", {})
cols = st.columns(4)
cols[0].metric("Subject layer", m.get("subject_layer"))
for col, key in ((cols[1], "faithfulness"), (cols[2], "causality")):  # None: no test sample answered
    col.metric(key.capitalize(), "n/a" if m.get(key) is None else f"{m[key]:.3f}")
cols[3].metric("Answered / test", f"{m.get('n_correct')} / {m.get('n_test')}")
for name in ("faithfulness_by_layer", "causality_by_rank"):
    if f"figures/{name}.json" in run.info.get("artifacts", []):
        st.plotly_chart(go.Figure(run.read_json(f"figures/{name}.json")), key=f"rel_{name}")

st.subheader("Live edit")
with ui.guard():
    model = ui.model(viz.run_model(run))
    rel = load(run.path / "relation.json") if (run.path / "relation.json").is_file() else world(lre.relation)
subjects = [s.subject for s in rel.samples]
c1, c2, c3 = st.columns(3)
subject = c1.selectbox("Subject", subjects, key="rel_subject")
target = c2.selectbox("Target subject (its object is the edit's target)", subjects, index=min(1, len(subjects) - 1),
                      key="rel_target")
rank = c3.number_input("Rank of the pseudo-inverse", 0, lre.W.shape[1], int(m.get("rank") or 8), key="rel_rank")
with ui.guard():
    out = edit_topk(model, lre, rel, subject, target, rank=int(rank))
st.code(out["prompt"][0])
b1, b2 = st.columns(2)
b1.dataframe(pd.DataFrame(out["before"], columns=["before", "p"]), hide_index=True, key="rel_before")
b2.dataframe(pd.DataFrame(out["after"], columns=["after", "p"]), hide_index=True, key="rel_after")
