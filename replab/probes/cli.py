"""``replab probe``: sweep probes over a store's hooks into a run directory (``replab.probes.runkind``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="sweep linear probes over a store's hooks (with control tasks)")
    p.add_argument("--store", required=True, help="activation store directory (from replab capture)")
    p.add_argument("--probes", default="logistic", help="comma list: logistic, meandiff, meandiff-iid, ridge")
    p.add_argument("--target", default=None, help="metadata column to predict (default: label; target for ridge)")
    p.add_argument("--hooks", default=None, help="comma list of hook names or globs (default: all)")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    p.add_argument("--groups", default=None, help="metadata column whose values never straddle folds (e.g. subject)")
    p.add_argument("--control-by", default=None, help="word-type column of the control task (default subject/token_id)")
    p.add_argument("--no-control", action="store_true", help="skip the control task")
    p.add_argument("--no-shuffled", action="store_true", help="skip the shuffled-label baseline")
    p.add_argument("--mdl", action="store_true", help="also report MDL (online code) codelength and compression")
    p.add_argument("--causal", action="store_true",
                   help="ablate the best hook's direction in the store's model vs random directions")
    p.add_argument("--causal-probe", default=None,
                   help="causal: probe type whose direction is ablated (default: the best probe), e.g. meandiff")
    p.add_argument("--answers", default=None, help='causal: two comma-separated answers, e.g. " great, terrible"')
    p.add_argument("--n-random", type=int, default=3, help="causal: random control directions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="e.g. cuda: run the probes' matrix products there")
    p.add_argument("--layers-per-batch", type=int, default=None,
                   help="hooks whose logistic probes are fitted together (default 1 on CPU, all that fit on a GPU)")
    p.add_argument("--out", default=None, help="run directory (default: <store>/../probes)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    from replab.activations import ActivationStore

    from replab.probes.runkind import probe_store

    store = ActivationStore.open(args.store)
    out = Path(args.out) if args.out else Path(args.store).resolve().parent / "probes"
    probes = [s.strip() for s in args.probes.split(",") if s.strip()]
    answers = None if args.answers is None else tuple(a for a in args.answers.split(",") if a)
    run = probe_store(
        store, out, probes=probes, target=args.target, hooks=None if args.hooks is None else args.hooks.split(","),
        cv=args.cv, groups=args.groups, control=not args.no_control, shuffled=not args.no_shuffled,
        control_by=args.control_by, mdl=args.mdl, causal=args.causal, causal_probe=args.causal_probe,
        answer_tokens=answers,
        n_random=args.n_random, seed=args.seed, device=args.device, layers_per_batch=args.layers_per_batch,
    )
    from replab import distributed

    if not distributed.is_main():  # under torchrun rank 0 reports the merged run
        return
    m = run.info["metrics"]
    sel = f", selectivity {m['best_selectivity']:.3f}" if m.get("best_selectivity") is not None else ""
    print(f"best: {m['best_hook']} {m['best_probe']} {m['metric']} {m['best_mean']:.3f}{sel}")
    print(f"wrote {out}")
