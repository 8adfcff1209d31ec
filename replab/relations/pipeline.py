"""One relation into one ``relation`` run: optional sweep, the chosen LRE, its faithfulness and causality.

Shared by ``replab relations fit|sweep``, the demo and the study.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from replab.relations.data import Relation
from replab.relations.evaluate import causality, faithfulness, sweep, test_set
from replab.relations.lre import fit_lre, split
from replab.relations.runkind import write_relation_run
from replab.relations.config import RelationConfig
from replab.runs import Run


def relation_run(model, relation: Relation, out: str | os.PathLike, *, subject_layer: int = RelationConfig.subject_layer,
                 sweep_layers: Sequence[int] | None = None, object_layer: int | None = RelationConfig.object_layer,
                 n_train: int = RelationConfig.n_train, beta: float = RelationConfig.beta, rank: int | None = RelationConfig.rank,
                 betas: Sequence[float] = (0.5, 1, 2, 3, 5), ranks: Sequence[int] | None = None,
                 method: str = RelationConfig.method, seed: int = RelationConfig.seed, config: dict | None = None) -> Run:
    """Fit (after a sweep over ``sweep_layers``, β and rank when given) and write the run.

    With a sweep the best (layer, β) by faithfulness and the best rank by causality at that layer
    replace ``subject_layer``, ``beta`` and (unless given) ``rank``.
    """
    rows = None
    if sweep_layers is not None:
        rows = sweep(model, relation, layers=sweep_layers, betas=betas, ranks=ranks, n_train=n_train, seed=seed,
                     method=method)
        best = max((r for r in rows if r["beta"] is not None),
                   key=lambda r: (r["faithfulness"] if r["faithfulness"] == r["faithfulness"] else -1.0, -r["beta"]))
        subject_layer, beta = best["layer"], best["beta"]
        scored = [r for r in rows if r["rank"] is not None and r["layer"] == subject_layer
                  and r["causality"] == r["causality"]]  # none when the model answers no test sample
        if rank is None and scored:
            rank = max(scored, key=lambda r: r["causality"])["rank"]
    lre = fit_lre(model, relation, subject_layer=subject_layer, object_layer=object_layer,
                  train=split(relation, n_train, seed).train, beta=beta, method=method)
    tests = test_set(model, relation, lre)
    f, c = faithfulness(lre, model, relation, tests=tests), causality(lre, model, relation, rank=rank, tests=tests)
    metrics = {"faithfulness": f.value, "causality": c.value, "n_correct": f.n, "n_test": f.n_test,
               "subject_layer": subject_layer, "beta": beta, "rank": rank, "method": method}
    return write_relation_run(out, lre, relation, metrics, model=model, sweep_rows=rows,
                              config=config or {"relation": relation.name, "n_train": n_train, "seed": seed})
