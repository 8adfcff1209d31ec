"""Run kind ``lens``: a trained lens (``replab.lenses.train(..., out=...)``).

Layout of ``--out``::

    run.json            settings (kind, steps, batch, data), metrics (train KL, tokens/s, parameters, held-out KL)
    lens/lens.json + lens/lens.safetensors    the lens (``replab.lenses.load(out / "lens", model)``)
    layers.csv/.json    with ``replab lens eval`` or ``--eval``: the per-layer evaluation table
"""

from __future__ import annotations

from replab.runs import RunKind, metric_summary

KIND = RunKind(
    name="lens", title="Lenses",
    summary=metric_summary("train_kl", "mean_kl", "tokens_per_s", "n_params"),
    make="replab lens train --kind tuned --model world --text world:corpus --out runs/world-lens-tuned",
)
