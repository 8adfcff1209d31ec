"""Lenses on the world model: quality by layer on held-out text, and which attention heads carry which facts.

    python studies/lens_world.py [--steps 150] [--batch 512] [--att-steps 150] [--out runs/study-lens]

Trains a tuned lens and a linear shortcut on the first 1,600 world-corpus documents (live, all
positions) and scores them with the logit lens on 400 held-out documents (KL(model || lens), CE,
top-1 agreement per layer). Trains the attention lens in both forms ("full": d_model x d_vocab per
head, the anchor's; "translator": d_model x d_model per head before the frozen unembedding) and
reports parameters and held-out KL at the last position of held-out documents. Then, per relation
(capital, city_country, continent, antonym, plural; held-out phrasings), the fraction of prompts on
which each head's full lens ranks the true object's first token in its top 10. Writes
``quality.csv``, ``attention_forms.csv``, ``heads.csv`` and ``report.md`` under ``--out`` plus one
``lens`` run per trained lens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from replab import lenses
from replab.datasets import TextCorpus, load
from replab.markdown import markdown_table as md_table
from replab.models import load_model
from replab.world.prompts import world_prompts

RELATIONS = ("capital", "city_country", "continent", "antonym", "plural")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--att-steps", type=int, default=150)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default="runs/study-lens")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("world")
    docs = load("world:corpus").documents
    train, held = TextCorpus(tuple(docs[:1600]), "train"), TextCorpus(tuple(docs[1600:2000]), "held")

    quality = []
    for kind in ("logit", "tuned", "shortcut"):
        lens = lenses.train(kind, model, train, steps=args.steps, batch_size=args.batch, context=64,
                            out=out / f"lens-{kind}", progress=False)
        df = lenses.evaluate(lens, model, held, context=64)
        quality.append(df.assign(lens=kind)[["lens", "layer", "kl", "ce", "top1", "entropy"]])
        print(kind, "final CE", round(df.attrs["final_ce"], 3), "tokens", df.attrs["tokens"], flush=True)
    quality = pd.concat(quality, ignore_index=True)
    quality.to_csv(out / "quality.csv", index=False)

    held_texts = list(docs[1600:1800])
    forms, att = [], {}
    for form in ("full", "translator"):
        lens = lenses.train("attention", model, train, steps=args.att_steps, batch_size=args.batch, form=form,
                            positions="all", context=64, out=out / f"lens-attention-{form}", progress=False)
        att[form] = lens
        untrained = lenses.AttentionLens(model, lenses.AttentionLensConfig(form=form))
        before = lenses.evaluate(untrained, model, held_texts, positions="last")
        after = lenses.evaluate(lens, model, held_texts, positions="last")
        for (_, b), (_, a) in zip(before[before["head"] == -1].iterrows(), after[after["head"] == -1].iterrows()):
            forms.append({"form": form, "block": int(a["layer"]), "params_per_block": lens.n_params() // len(lens.blocks),
                          "kl_init": b["kl"], "kl_trained": a["kl"], "top1_trained": a["top1"],
                          "tokens_per_s": lens.metrics["tokens_per_s"]})
    forms = pd.DataFrame(forms)
    forms.to_csv(out / "attention_forms.csv", index=False)

    heads = lenses.head_facts(att["full"], model, {r: world_prompts(r, "heldout") for r in RELATIONS}, k=args.k)
    heads.to_csv(out / "heads.csv", index=False)
    best = {r: heads.loc[heads[r].idxmax(), ["layer", "head", r]].tolist() for r in RELATIONS}

    wide = quality.pivot(index="layer", columns="lens", values=["kl", "top1"])
    wide.columns = [f"{m}_{k}" for m, k in wide.columns]
    report = ["# Lenses on the world model", "", f"steps {args.steps} x {args.batch} tokens (tuned), "
              f"{args.att_steps} x {args.batch} (attention), held-out: 400 documents.", "",
              "## Quality by layer (held-out, all positions)", "", md_table(wide.reset_index()), "",
              "## Attention lens forms (held-out, last position)", "", md_table(forms), "",
              f"## Which heads carry which facts (full lens, true object in top {args.k}, held-out phrasings)", "",
              md_table(heads), "", "Best head per relation: " +
              "; ".join(f"{r}: L{int(v[0])}H{int(v[1])} {v[2]:.2f}" for r, v in best.items()), ""]
    (out / "report.md").write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
