"""``replab probe``: sweep probes over a store's hooks into a run directory (``replab.probes.runkind``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from replab.configs import add_config_flags, config_from_args
from replab.probes.config import PROBE_TASKS, SweepConfig, default_target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="sweep linear probes over a store's hooks (with control tasks)")
    p.add_argument("--store", required=True, help="activation store directory (from replab capture)")
    p.add_argument("--probes", default="logistic", help="comma list: logistic, meandiff, meandiff-iid, ridge")
    p.add_argument("--target", default=None, help="metadata column to predict (default: label; target for ridge)")
    p.add_argument("--hooks", default=None, help="comma list of hook names or globs (default: all)")
    add_config_flags(p, SweepConfig)
    p.add_argument("--causal", action="store_true",
                   help="ablate the best hook's direction in the store's model vs random directions")
    p.add_argument("--causal-probe", default=None,
                   help="causal: probe type whose direction is ablated (default: the best probe), e.g. meandiff")
    p.add_argument("--answers", default=None, help='causal: two comma-separated answers, e.g. " great, terrible"')
    p.add_argument("--n-random", type=int, default=3, help="causal: random control directions")
    p.add_argument("--out", default=None, help="run directory (default: <store>/../probes)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    config = config_from_args(SweepConfig, args)  # validated before the store is opened
    from replab.activations import ActivationStore
    from replab.probes.inputs import check_inputs

    store = ActivationStore.open(args.store)  # imports no torch: the checks below fail fast
    probes = [s.strip() for s in args.probes.split(",") if s.strip()]
    hooks = None if args.hooks is None else args.hooks.split(",")
    tasks = {PROBE_TASKS.get(p) for p in probes}
    if len(tasks) == 1 and None not in tasks:  # built-in names of one task (sweep checks anything else)
        task = tasks.pop()
        check_inputs(store, hooks, args.target or default_target(task), config.cv,
                     classification=task == "classification")

    from replab.probes.runkind import probe_store

    out = Path(args.out) if args.out else Path(args.store).resolve().parent / "probes"
    answers = None if args.answers is None else tuple(a for a in args.answers.split(",") if a)
    run = probe_store(
        store, out, probes=probes, target=args.target, hooks=hooks,
        causal=args.causal, causal_probe=args.causal_probe, answer_tokens=answers, n_random=args.n_random,
        **dataclasses.asdict(config),
    )
    from replab import distributed

    if not distributed.is_main():  # under torchrun rank 0 reports the merged run
        return
    m = run.info["metrics"]
    sel = f", selectivity {m['best_selectivity']:.3f}" if m.get("best_selectivity") is not None else ""
    print(f"best: {m['best_hook']} {m['best_probe']} {m['metric']} {m['best_mean']:.3f}{sel}")
    print(f"wrote {out}")
