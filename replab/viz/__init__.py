"""Views for the explorer app (``replab app``), usable from a notebook too.

::

    from replab import viz
    lens = replab.lenses.logit_lens(model, "The capital of France is")   # tidy: layer, position, top_token, ...
    viz.lens_heatmap(lens).show()
    viz.run_index("runs")                                       # every run directory, with problems explained
"""

from replab.viz.figures import (
    activation_histogram,
    attention_heatmap,
    causal_bars,
    lens_heatmap,
    logit_effects,
    pca_scatter,
    sae_comparison,
    topk_bar,
)
from replab.viz.highlight import token_spans
from replab.viz.lens_figures import head_bar, head_grid, lens_curves, lens_prompt_heatmap
from replab.viz.lens import (
    MAX_PARAMS,
    MAX_TOKENS,
    AttentionPatterns,
    LiveLimitError,
    attention_patterns,
    n_params,
    next_token_topk,
)
from replab.viz.projection import Projection, pca_2d
from replab.viz.runs import (
    FEATURE_KINDS,
    SAE_METRICS,
    ProbeRun,
    card_tables,
    feature_table,
    find_latents,
    open_run,
    read_latent,
    read_probe_run,
    run_index,
    run_model,
    sae_summary,
    world_cards,
)

__all__ = [
    "next_token_topk", "attention_patterns", "AttentionPatterns", "n_params", "LiveLimitError",
    "MAX_PARAMS", "MAX_TOKENS",
    "run_index", "run_model", "open_run", "read_probe_run", "ProbeRun", "sae_summary", "SAE_METRICS", "FEATURE_KINDS",
    "feature_table", "find_latents", "read_latent", "world_cards", "card_tables",
    "pca_2d", "Projection", "token_spans",
    "lens_heatmap", "topk_bar", "attention_heatmap", "pca_scatter", "sae_comparison", "activation_histogram",
    "logit_effects", "causal_bars", "lens_curves", "lens_prompt_heatmap", "head_grid", "head_bar",
]
