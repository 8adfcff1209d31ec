"""Lenses on the world model: quality by layer, full vs translator attention lens, and which heads carry which facts.

    python studies/lens_world.py [--steps 150] [--batch-size 512] [--k 10] [--out runs/study-lens]

World corpus documents 0..1599 train every lens, 1600..1999 are held out (as in anchors §3b).
Residual lenses: logit (nothing to fit), tuned (tuned-lens's SGD recipe), linear shortcut (least
squares on ``steps * batch_size`` rows); each is scored per layer on the held-out text (KL(model ||
lens), CE, top-1). Attention lenses, full (per head d_model x d_vocab, init W_U) and translator
(per head d_model x d_model in front of W_U), are trained on every position of the training text and
scored the same way (parameters, held-out KL per block). Then, for each relation (capital,
city_country, continent, antonym, plural; up to ``--prompts`` prompts each), the fraction of prompts
on which each head's lens ranks the true object in its top ``k`` (``head_facts``), for the
untrained full lens (= direct logit attribution of the head), the trained full lens and the
translator. Writes ``quality.csv``, ``attention.csv``, ``heads.csv`` (+ ``.json``) and lens runs under
``--out``, and prints the tables.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from replab.datasets import TextCorpus
from replab.datasets import load as load_data
from replab.lenses import AttentionLens, LogitLens, evaluate, train
from replab.lenses.evaluate import head_facts
from replab.models import load_model

RELATIONS = ("capital", "city_country", "continent", "antonym", "plural")


def corpus_split(n_train: int = 1600) -> tuple[TextCorpus, TextCorpus]:
    docs = load_data("world:corpus").documents
    return TextCorpus(docs[:n_train], name="world-train"), TextCorpus(docs[n_train:], name="world-heldout")


def subsample(ps, n: int):
    """Every ``len(ps) // n``-th prompt, at most ``n`` (spread over subjects)."""
    return ps.subset(list(range(0, len(ps), max(1, len(ps) // n)))[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=200, help="prompts per relation for the head table")
    ap.add_argument("--out", default="runs/study-lens")
    args = ap.parse_args()
    model = load_model("world")
    ctx = int(model.cfg.n_ctx)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_text, held = corpus_split()
    common = dict(steps=args.steps, batch_size=args.batch_size, context=ctx, progress=False)

    quality, lenses = [], {"logit": LogitLens(model)}
    for kind in ("tuned", "shortcut"):
        t0 = time.perf_counter()
        lenses[kind] = train(kind, model, train_text, out=out / f"lens-{kind}", **common)
        print(f"{kind}: trained in {time.perf_counter() - t0:.1f}s ({lenses[kind].n_params():,} parameters)")
    for kind, lens in lenses.items():
        df = evaluate(lens, model, held, context=ctx)
        quality.append(df.drop(columns=["hook"]).assign(lens=kind, final_ce=df.attrs["final_ce"],
                                                         prediction_depth=df.attrs["prediction_depth"]))
    quality = pd.concat(quality, ignore_index=True)

    attn, heads = [], []
    named = {"untrained (DLA)": AttentionLens(model)}
    for form in ("full", "translator"):
        t0 = time.perf_counter()
        named[form] = train("attention", model, train_text, form=form, positions="all", out=out / f"lens-attn-{form}",
                            **common)
        print(f"attention {form}: trained in {time.perf_counter() - t0:.1f}s")
    for name, lens in named.items():
        blocks = evaluate(lens, model, held, context=ctx)
        attn.append({"lens": name, "n_params": lens.n_params(), "mean_kl": float(blocks["kl"].mean()),
                     **{f"kl_block{int(r.layer)}": r.kl for r in blocks.itertuples()},
                     **{f"top1_block{int(r.layer)}": r.top1 for r in blocks.itertuples()}})
        for rel in RELATIONS:
            facts = head_facts(lens, model, subsample(load_data(f"world:{rel}"), args.prompts), k=args.k)
            heads.append(facts.assign(lens=name, relation=rel))
    attn, heads = pd.DataFrame(attn), pd.concat(heads, ignore_index=True)
    for name, df in (("quality", quality), ("attention", attn), ("heads", heads)):
        df.to_csv(out / f"{name}.csv", index=False)
        df.to_json(out / f"{name}.json", orient="records", indent=1)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.3f}".format):
        print(quality.pivot(index="layer", columns="lens", values=["kl", "ce", "top1"]).to_string())
        print(attn.to_string(index=False))
        print(heads.assign(head=heads["block"].astype(str) + "." + heads["head"].astype(str))
              .pivot(index=["lens", "head"], columns="relation", values="fraction").to_string())


if __name__ == "__main__":
    main()
