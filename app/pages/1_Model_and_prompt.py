"""Model & prompt: next-token top-k, a layer x position logit lens and attention patterns, live."""

import streamlit as st
from lib import ui

from replab import viz

ui.page("Model & prompt", f"Runs a small model on your prompt, live (up to {viz.MAX_PARAMS / 1e6:.0f}M parameters "
                          f"and {viz.MAX_TOKENS} tokens). ?model=...&prompt=... in the URL preset the inputs.")

left, right = st.columns([1, 2])
name = left.text_input("Model", value=st.query_params.get("model", "world"), key="model_name",
                       help="'world' (the shipped world model), a local Hugging Face checkpoint directory, or a "
                            "TransformerLens model name already in the Hugging Face cache.").strip()
text = right.text_input("Prompt", value=st.query_params.get("prompt", "The capital of France is"), key="prompt")
k = left.slider("Top-k next tokens", 1, 50, 10, key="topk")

if not name:
    st.warning("Type a model name: 'world', a checkpoint directory or a TransformerLens name.")
    st.stop()
with ui.guard():
    model = ui.model(name)
    topk, lens, attention = ui.prompt_views(model, name, text, k)

cfg = model.cfg
right.caption(f"`{name}`: {viz.n_params(model) / 1e6:.2f}M parameters, {cfg.n_layers} layers, {cfg.n_heads} heads, "
              f"d_model {cfg.d_model}; prompt of {len(attention.tokens)} tokens.")

st.subheader("Next token")
a, b = st.columns([1, 2])
a.dataframe(topk, hide_index=True, key="model_topk",
            column_config={"prob": st.column_config.NumberColumn(format="%.4f"),
                           "logit": st.column_config.NumberColumn(format="%.3f")})
b.plotly_chart(viz.topk_bar(topk), key="model_topk_chart")

st.subheader("Logit lens")
st.caption("Each layer's residual stream (resid_post) at each position, decoded with the model's own ln_final and "
           "unembedding (no weight processing): the cell shows the top token and its probability. The last layer "
           "is the model's output.")
st.plotly_chart(viz.lens_heatmap(lens), key="model_lens")
with st.expander("Logit-lens table"):
    st.dataframe(lens.drop(columns=["hook"]), hide_index=True, key="model_lens_table")

st.subheader("Attention")
c1, c2 = st.columns(2)
layer = c1.selectbox("Layer", range(attention.patterns.shape[0]), key="attn_layer")
head = c2.selectbox("Head", range(attention.patterns.shape[1]), key="attn_head")
st.plotly_chart(viz.attention_heatmap(attention.tokens, attention.patterns[layer, head], layer, head),
                key="model_attention")
