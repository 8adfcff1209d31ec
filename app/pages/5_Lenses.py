"""Lenses: quality by layer (logit vs tuned vs linear shortcut), a lens x position table and the attention-lens grid."""

import pandas as pd
import streamlit as st
from lib import ui

from replab import viz
from replab.lenses import head_topk, prompt_table
from replab.runs import Run

root = ui.page("Lenses", "Lenses written by `replab lens train` and scored by `replab lens eval`: each layer's "
                         "residual stream (or each attention head's output) decoded into next-token probabilities. "
                         "KL is KL(model ‖ lens) in nats; top-1 is agreement with the model's own prediction.")
index = ui.run_index(root)
runs = index[index["kind"] == "lens"]
if runs.empty:
    st.info(f"No lens runs under `{root}` yet. Make one with:\n\n```\n{ui.make_command('lens')}\n```")
    st.stop()
opened = {}
for name, path in zip(runs["name"], runs["path"]):
    with ui.guard(stop=False):
        opened[name] = Run.open(path)
lens_kind = {name: run.info["config"].get("kind") for name, run in opened.items()}


def lens_of(name: str, model):
    return ui.lens(opened[name].path, model)


def model_of(name: str):
    return ui.model(viz.run_model(opened[name]))


st.header("Quality by layer")
scored = {name: run.read_table("layers") for name, run in opened.items()
          if lens_kind[name] != "attention" and "layers.csv" in run.info.get("artifacts", [])}
if scored:
    labelled = {f"{name} ({lens_kind[name]})": df for name, df in scored.items()}
    st.plotly_chart(viz.lens_curves(labelled), key="lens_curves")
    st.dataframe(pd.concat([df.assign(run=name) for name, df in labelled.items()])[
        ["run", "layer", "kl", "ce", "top1", "entropy"]], hide_index=True, key="lens_quality")
else:
    st.info("No lens run has been scored yet. Score one on held-out text with:\n\n"
            "```\nreplab lens eval --lens runs/world-lens-tuned --model world --text world:corpus\n```")

text = st.text_input("Prompt", value=st.query_params.get("prompt", "The capital of France is"), key="lens_prompt")

st.header("Lens × position")
residual = [name for name in opened if lens_kind[name] != "attention"]
if residual:
    name = st.selectbox("Lens run", residual, key="lens_run",
                        format_func=lambda n: f"{n} ({lens_kind[n]})")
    with ui.guard():
        model = model_of(name)
        lens = lens_of(name, model)
        table = prompt_table(lens, model, text)
    st.plotly_chart(viz.lens_prompt_heatmap(table, f"{lens_kind[name]} lens ({name}): top token per layer and "
                                                   "position, coloured by p(true next token)"), key="lens_grid")
    with st.expander("Lens × position table"):
        st.dataframe(table, hide_index=True, key="lens_table")

st.header("Attention lens")
attention = [name for name in opened if lens_kind[name] == "attention"]
if not attention:
    st.info("No attention-lens run yet. Make one with:\n\n```\nreplab lens train --kind attention --form translator "
            "--model world --text world:corpus --out runs/world-lens-attention\n```")
    st.stop()
name = st.selectbox("Attention-lens run", attention, key="attn_lens_run",
                    format_func=lambda n: f"{n} ({opened[n].info['config'].get('lens_config', {}).get('form')})")
k = st.slider("Top-k tokens per head", 1, 20, 5, key="attn_lens_k")
with ui.guard():
    model = model_of(name)
    lens = lens_of(name, model)
    topk = head_topk(lens, model, [text], k=k)
st.plotly_chart(viz.head_grid(topk), key="attn_lens_grid")
c1, c2 = st.columns(2)
block = c1.selectbox("Block", lens.layers(), key="attn_lens_block")
head = c2.selectbox("Head", range(int(model.cfg.n_heads)), key="attn_lens_head")
a, b = st.columns([1, 2])
a.dataframe(topk[(topk["block"] == block) & (topk["head"] == head)][["rank", "token", "prob"]], hide_index=True,
            key="attn_lens_topk", column_config={"prob": st.column_config.NumberColumn(format="%.4f")})
b.plotly_chart(viz.head_bar(topk, block, head), key="attn_lens_bar")
