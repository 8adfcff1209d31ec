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


def lens_run(kind: str, model, train_data, held_data, out, *, eval_positions: str = "all",
             eval_max_tokens: int | None = None, **train_kw):
    """Train a lens into run directory ``out`` (kind ``lens``), then score it per layer on ``held_data``.

    Writes the ``layers`` table (``replab.lenses.evaluate``) and adds ``mean_kl`` and ``prediction_depth``
    to the run's metrics; ``train_kw`` goes to ``replab.lenses.train``.

    Returns:
        The finished run.
    """
    from replab.lenses.evaluate import evaluate
    from replab.lenses.train import train
    from replab.runs import Run

    lens = train(kind, model, train_data, out=out, **train_kw)
    df = evaluate(lens, model, held_data, positions=eval_positions, context=train_kw.get("context"),
                  max_tokens=eval_max_tokens)
    return write_scores(Run.open(out), df)


def write_scores(run, df):
    """Store a lens's per-layer scores (``replab.lenses.evaluate``) in its run: ``layers`` table, ``mean_kl`` and
    ``prediction_depth`` metrics; returns the finished run."""
    run.write_table("layers", df)
    return run.finish({"mean_kl": float(df["kl"].mean()), "prediction_depth": df.attrs["prediction_depth"]})
