"""``replab hooks``: list a model's hook names."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hooks", help="list the hook names of a model (one per tensor)")
    p.add_argument("--model", default="world")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'blocks.*.hook_resid_post'")
    p.set_defaults(func=_hooks)


def _hooks(args: argparse.Namespace) -> None:
    import replab

    for name in replab.hook_names(replab.load_model(args.model), args.pattern):
        print(name)
