"""``replab <command>``: a thin dispatcher over each subpackage's ``cli.register``."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# Each module exposes ``register(subparsers)``; adding a command is one line here.
COMMAND_MODULES = (
    "replab.models.cli",
    "replab.world.cli",
    "replab.activations.cli",
    "replab.probes.cli",
    "replab.saes.cli",
    "replab.relations.cli",
    "replab.lenses.cli",
    "replab.demo",
    "replab.app_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replab", description="Interpretability and representation-analysis workbench.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {import_module('replab').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``replab`` console script. Replab errors print one clear line, not a traceback."""
    from replab.errors import ReplabError

    from replab.distributed import init_from_env

    args = build_parser().parse_args(argv)
    try:
        init_from_env()  # under torchrun: join the process group (gloo on CPU, NCCL on GPUs)
        args.func(args)
    except ReplabError as exc:
        print(f"replab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("replab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
