"""``replab hooks``: list a model's hook names."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hooks", help="list the hook names of a model (one per tensor)")
    p.add_argument("--model", default="world")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'blocks.*.hook_resid_post'")
    p.set_defaults(func=_hooks)


def _hooks(args: argparse.Namespace) -> int:
    """Print the hooks (matching ``pattern``); a pattern matching nothing is an error with close matches.
    A local GPT-2 checkpoint (the world model) is listed from its config, without loading the weights."""
    from replab.models.catalogue import checkpoint_hook_names, checkpoint_path
    from replab.models.patterns import match_hooks

    local = checkpoint_path(args.model)
    derived = checkpoint_hook_names(local) if local is not None else None
    if derived is None:
        import replab

        model = replab.load_model(args.model)
        derived = replab.hook_names(model), set(model.hook_dict)
    names, aliases = derived
    for name in match_hooks(args.pattern, names, aliases) if args.pattern else names:
        print(name)
    return 0
