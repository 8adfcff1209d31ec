"""``replab capture`` and ``replab verify``: the command-line face of ``replab.activations``."""

from __future__ import annotations

import argparse
import dataclasses

from replab.activations.config import CaptureConfig
from replab.configs import add_config_flags, config_from_args


def register(subparsers) -> None:
    """Add the ``capture`` and ``verify`` subcommands (each sets ``func(args) -> exit code``)."""
    p = subparsers.add_parser("capture", help="Capture activations into a sharded, resumable store.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="prompt set: world:<name>, or a .jsonl, .json, .csv or .tsv file with a text column")
    src.add_argument("--text", help="corpus packed into contexts: a .txt file, a .jsonl with 'text', or world:corpus")
    p.add_argument("--model", required=True, help="'world', a checkpoint directory or a TransformerLens name")
    p.add_argument("--hooks", nargs="+", required=True, help="hook names or globs, e.g. 'blocks.*.hook_resid_post'")
    p.add_argument("--out", required=True, help="store directory (also a run directory)")
    add_config_flags(p, CaptureConfig)
    p.add_argument("--split", default="train", help="world prompt sets: train or heldout")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_capture)

    v = subparsers.add_parser("verify", help="Recompute an activation store's checksums.")
    v.add_argument("path")
    v.set_defaults(func=_verify)


def _capture(args: argparse.Namespace) -> int:
    from replab.datasets import load
    from replab.models.catalogue import check_hooks, checkpoint_path

    # everything visible without the model is checked first, before torch is imported
    config = config_from_args(CaptureConfig, args)
    loaded = load(args.prompts if args.prompts else args.text, split=args.split)
    local = checkpoint_path(args.model)
    if local is not None:
        check_hooks(local, args.hooks)

    from replab import distributed
    from replab.activations.capture import capture
    from replab.models import load_model
    from replab.models.sources import as_corpus

    source = loaded if args.prompts else as_corpus(loaded)
    model = load_model(args.model, device=args.device or distributed.default_device())
    store = capture(model, source, args.hooks, out=args.out, **dataclasses.asdict(config))
    print(f"{store.path}: {len(store)} rows x {len(store.hooks)} hooks ({store.dtype})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from replab.activations.store import verify

    report = verify(args.path)
    state = "complete" if report["complete"] else "partial (re-run the capture to finish it)"
    print(f"OK: {args.path}: {report['rows']} rows in {report['shards']} shards, {report['files']} files verified; {state}")
    return 0
