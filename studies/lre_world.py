"""Every world relation through LRE and LRC: best subject layer, faithfulness, causality, concepts and baselines.

    python studies/lre_world.py [--relations capital,continent,...] [--n-train 5] [--out runs/study-lre]

Per relation: an LRE sweep over subject layers 0..n (β 1, 3; ranks 4, 8, 16, 32, full), the
identity / translation / regression baselines at the best layer, LRCs (subject layer best, object
layer n-1) with the mean-activation, logistic and ridge baselines, scored as classifiers and causal
edits on a held-out phrasing. Writes ``table.csv`` (and ``.json``) plus a ``relation`` run per
relation under ``--out``, and prints the table with a verdict: a relation is called not linear when
no subject layer reaches faithfulness 0.5 although the model answers it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from replab.models import load_model
from replab.relations import (BASELINES, causality, evaluate_concepts, faithfulness, fit_concepts, fit_lre, split,
                              sweep, test_set, world, world_names)
from replab.relations.runkind import write_relation_run

RANKS = (4, 8, 16, 32, None)


def study_relation(model, name: str, n_train: int, out: Path) -> dict:
    rel = world(name)
    n = model.cfg.n_layers
    rows = sweep(model, rel, betas=(1, 3), ranks=[r for r in RANKS if r], n_train=n_train, progress=False)
    faith = [r for r in rows if r["beta"] is not None]
    best = max(faith, key=lambda r: (r["faithfulness"] if r["faithfulness"] == r["faithfulness"] else -1, -r["beta"]))
    layer, beta = best["layer"], best["beta"]
    train = split(rel, n_train).train
    lre = fit_lre(model, rel, subject_layer=layer, train=train, beta=beta)
    tests = test_set(model, rel, lre)
    caus = {r: causality(lre, model, rel, rank=r, tests=tests).value for r in RANKS}
    rank = max(caus, key=lambda r: caus[r])
    row = {"relation": name, "kind": rel.kind, "samples": len(rel.samples), "answered": tests.correct.sum().item(),
           "n_test": len(tests.target), "best_layer": layer, "beta": beta,
           "faithfulness": faithfulness(lre, model, rel, tests=tests).value, "causality": caus[rank], "rank": rank,
           "faith_by_layer": " ".join(f"{r['faithfulness']:.2f}" for r in faith if r["beta"] == beta)}
    for method in ("identity", "translation", "regression"):
        base = fit_lre(model, rel, subject_layer=layer, train=train, method=method)
        row[f"faith_{method}"] = faithfulness(base, model, rel, tests=tests).value
    for method in ("lrc", *BASELINES):
        if method == "logistic" and len(rel.objects) < 3:
            continue
        c = fit_concepts(model, rel, subject_layer=layer, object_layer=max(layer, n - 1), rank=8, method=method,
                         n_train=n_train)
        e = evaluate_concepts(c, model, rel)
        row[f"{method}_cls"], row[f"{method}_causal"] = e["classification"].value, e["causal"].value
    row["linear"] = "yes" if row["faithfulness"] >= 0.5 else ("no" if row["answered"] else "model fails")
    write_relation_run(out / f"lre-{name}", lre, rel, {k: v for k, v in row.items() if k != "relation"}, model=model,
                       config={"relation": name, "n_train": n_train}, sweep_rows=rows)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relations", default=",".join(world_names()))
    ap.add_argument("--n-train", type=int, default=5)
    ap.add_argument("--out", default="runs/study-lre")
    args = ap.parse_args()
    model = load_model("world")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([study_relation(model, name, args.n_train, out) for name in args.relations.split(",")])
    table.to_csv(out / "table.csv", index=False)
    table.to_json(out / "table.json", orient="records", indent=1)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.2f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
