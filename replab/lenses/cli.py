"""``replab lens train`` / ``replab lens eval``: a thin layer over ``replab.lenses.train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from replab.configs import add_config_flags, config_from_args
from replab.lenses.config import LensTrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lens", help="train and evaluate lenses (logit, tuned, shortcut, attention)")
    lsub = p.add_subparsers(dest="lens_command", required=True)
    t = lsub.add_parser("train", help="train a lens into a run directory (kind 'lens')")
    t.add_argument("--kind", default="tuned", choices=["tuned", "shortcut", "attention", "logit"])
    t.add_argument("--store", default=None, help="activation store with the residual hooks (cached training)")
    t.add_argument("--model", default=None, help="model (default: the store's); with --text trains live")
    t.add_argument("--text", default=None, help="live data: a replab.datasets spec (world:corpus) or a text file")
    t.add_argument("--out", required=True, help="run directory")
    add_config_flags(t, LensTrainConfig)
    t.set_defaults(func=_train)
    e = lsub.add_parser("eval", help="per-layer KL / CE / top-1 / entropy of a lens on held-out text")
    e.add_argument("--lens", required=True, help="a lens run directory (or its lens/ folder); 'logit' for the logit lens")
    e.add_argument("--model", required=True)
    e.add_argument("--text", required=True, help="a replab.datasets spec or a text file")
    e.add_argument("--context", type=int, default=None)
    e.add_argument("--max-tokens", type=int, default=None)
    e.set_defaults(func=_eval)


def _context(model, context):
    return context or int(model.cfg.n_ctx)


def _train(args: argparse.Namespace) -> int:
    import replab
    from replab.errors import DataError

    # everything that can be checked without the model (and without importing torch) first
    config = config_from_args(LensTrainConfig, args)
    if (args.store is None) == (args.text is None):
        raise DataError("Pass exactly one of --store DIR (cached) or --text SPEC (live, with --model).")
    store = replab.activations.ActivationStore.open(args.store) if args.store else None
    name = args.model or (store.manifest["model"] if store is not None else None)
    if name is None:
        raise DataError("Live training needs --model NAME (e.g. --model world).")
    data = store if store is not None else replab.datasets.load(args.text)

    from replab.distributed import default_device
    from replab.lenses import train

    model = replab.load_model(name, device=default_device())  # under torchrun with GPUs: cuda:LOCAL_RANK
    context = None if store is not None else _context(model, config.context)
    lens = train(args.kind, model, data, out=args.out, **{**dataclasses.asdict(config), "context": context})
    print(f"{args.kind} lens ({lens.n_params():,} parameters) -> {args.out}: "
          + ", ".join(f"{k}={v:.4g}" for k, v in lens.metrics.items() if isinstance(v, float)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import replab
    from replab.errors import RunDirError
    from replab.runs import RUN_FILE, Run

    texts = replab.datasets.load(args.text)  # checked before the model loads
    path = Path(args.lens)
    if args.lens != "logit" and not path.is_dir():
        raise RunDirError(f"--lens {path}: no such directory; pass a lens run directory (from replab lens train) "
                        "or 'logit'.")
    run = Run.open(path) if (path / RUN_FILE).exists() else None
    from replab.lenses import LogitLens, evaluate, load

    model = replab.load_model(args.model)
    lens = LogitLens(model) if args.lens == "logit" else load(path / "lens" if run is not None else path, model)
    df = evaluate(lens, model, texts, context=_context(model, args.context),
                  max_tokens=args.max_tokens, progress=True)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"prediction depth {df.attrs['prediction_depth']:.3f} over {df.attrs['tokens']} tokens")
    if run is not None:
        from replab.lenses.runkind import write_scores

        write_scores(run, df)
    return 0
