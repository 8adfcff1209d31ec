"""``replab <command>``: a thin dispatcher over each subpackage's ``cli.register``.

Only the module of the command being run is imported (``replab --help`` and argument errors of a
command stay free of torch); ``build_parser()`` with no command registers every module.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

# command -> (module exposing ``register(subparsers)``, one-line help for ``replab --help``)
COMMANDS = {
    "hooks": ("replab.models.cli", "list the hook names of a model (one per tensor)"),
    "world": ("replab.world.cli", "train or evaluate the world model"),
    "capture": ("replab.activations.cli", "capture activations into a sharded, resumable store"),
    "verify": ("replab.activations.cli", "recompute an activation store's checksums"),
    "probe": ("replab.probes.cli", "sweep linear probes over a store's hooks (with control tasks)"),
    "train-sae": ("replab.saes.cli", "train a sparse autoencoder on a store hook, evaluate it, analyse features"),
    "eval-sae": ("replab.saes.cli", "evaluate an existing (replab or SAELens) SAE on a store hook, analyse features"),
    "relations": ("replab.relations.cli", "linear relational embeddings (LRE) and concepts (LRC)"),
    "lens": ("replab.lenses.cli", "train and evaluate lenses (logit, tuned, shortcut, attention)"),
    "demo": ("replab.demo", "create the demo runs on the world model (once) and open the explorer app"),
    "app": ("replab.app_cli", "open the explorer app (Streamlit) on a runs directory"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``replab`` parser: every command's flags, or (``command`` given) only that command's module's."""
    parser = argparse.ArgumentParser(prog="replab", description="Interpretability and representation-analysis workbench.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {import_module('replab').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = list(dict.fromkeys(m for m, _ in COMMANDS.values()))
    if command is not None:
        modules = [COMMANDS[command][0]] if command in COMMANDS else []
    for name in modules:
        import_module(name).register(sub)
    for name, (_, text) in COMMANDS.items():  # the other commands: listed in --help, parsed when selected
        if name not in sub.choices:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _command(argv: list[str]) -> str:
    """The command word of ``argv`` (``""`` for ``replab --help`` / ``--version``)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``replab`` console script. Replab errors print one clear line, not a traceback."""
    from replab.errors import ReplabError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join the process group
            from replab.distributed import init_from_env  # (imports torch, so only when launched that way)

            init_from_env()
        args.func(args)
    except ReplabError as exc:
        print(f"replab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("replab: interrupted; what was written is kept: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
