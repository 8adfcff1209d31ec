"""Run kind ``relation``: one relation's LRE (W, b), its metrics, sweep table and figures.

Layout::

    run.json                       settings, model, metrics (faithfulness, causality, n, LRC accuracies)
    lre.safetensors                W [d_z, d_h], b [d_z] and the LRE's settings (``replab.relations.load_lre``)
    relation.json                  the relation in the LRE paper's format (when it has no per-sample slots)
    sweep.csv / sweep.json         with ``sweep``: faithfulness per (layer, beta), causality per (layer, rank)
    figures/faithfulness_by_layer.json, figures/causality_by_rank.json
"""

from __future__ import annotations

import os
from pathlib import Path

from replab.relations.data import Relation, to_dict
from replab.relations.lre import LRE, load_lre
from replab.runs import Run, RunKind

FIGURES = ("faithfulness_by_layer", "causality_by_rank")


def _summary(info: dict) -> str:
    m = info.get("metrics", {})
    parts = [f"{k}={m[k]:.2f}" if isinstance(m.get(k), (int, float)) else f"{k}=n/a"
             for k in ("faithfulness", "causality")]
    if m.get("n_test") is not None:
        parts.append(f"{m.get('n_correct')}/{m['n_test']} answered")
    return f"{m.get('relation', '?')}: " + ", ".join(parts)


def write_relation_run(path: str | os.PathLike, lre: LRE, relation: Relation, metrics: dict, *, model=None,
                       config: dict | None = None, sweep_rows: list[dict] | None = None) -> Run:
    """Write a complete ``relation`` run directory."""
    run = Run.create(path, "relation", config or {}, model=model)
    lre.save(run._artifact("lre.safetensors"))
    if not any(s.fields for s in relation.samples):
        run.write_json("relation.json", to_dict(relation))
    if sweep_rows:
        import pandas as pd

        from replab.relations.figures import sweep_figures

        run.write_table("sweep", pd.DataFrame(sweep_rows))
        for name, fig in sweep_figures(sweep_rows, relation.name).items():
            run.write_figure(name, fig)
    return run.finish({"relation": relation.name, "kind": relation.kind, **metrics})


def read_lre(run: Run) -> LRE:
    """The LRE stored in a ``relation`` run."""
    return load_lre(Path(run.path) / "lre.safetensors")


KIND = RunKind(name="relation", title="Relations", summary=_summary, page="6_Relations",
               make="replab relations sweep --model world --relation capital --out runs/lre-capital",
               figures=FIGURES)
