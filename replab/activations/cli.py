"""``replab capture`` and ``replab verify``: the command-line face of ``replab.activations``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``capture`` and ``verify`` subcommands (each sets ``func(args) -> exit code``)."""
    p = subparsers.add_parser("capture", help="Capture activations into a sharded, resumable store.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="prompt set: world:<name>, a .jsonl or .csv file")
    src.add_argument("--text", help="corpus packed into contexts: a .txt file, a .jsonl with 'text', or world:corpus")
    p.add_argument("--model", required=True, help="'world', a checkpoint directory or a TransformerLens name")
    p.add_argument("--hooks", nargs="+", required=True, help="hook names or globs, e.g. 'blocks.*.hook_resid_post'")
    p.add_argument("--positions", default="all", choices=["all", "last", "subject_last"])
    p.add_argument("--out", required=True, help="store directory (also a run directory)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "int8"],
                   help="store dtype; int8: per-row symmetric codes + float32 scales, dequantised on read")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=None, help="corpus: stop after this many tokens")
    p.add_argument("--context", type=int, default=None, help="corpus: tokens per context (default min(128, n_ctx))")
    p.add_argument("--shard-mb", type=float, default=64)
    p.add_argument("--no-resume", dest="resume", action="store_false", help="overwrite a store already at --out")
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
    _check_positive(batch_size=args.batch_size, shard_mb=args.shard_mb, max_tokens=args.max_tokens,
                    context=args.context)
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
    store = capture(model, source, args.hooks, positions=args.positions, out=args.out, dtype=args.dtype,
                    batch_size=args.batch_size, max_tokens=args.max_tokens, context=args.context,
                    shard_mb=args.shard_mb, resume=args.resume)
    print(f"{store.path}: {len(store)} rows x {len(store.hooks)} hooks ({store.dtype})")
    return 0


def _check_positive(**flags: float | None) -> None:
    """Refuse a non-positive numeric flag before any heavy work (``None`` means "not given")."""
    from replab.errors import DataError

    for name, value in flags.items():
        if value is not None and value <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {value}; pass a value above 0.")


def _verify(args: argparse.Namespace) -> int:
    from replab.activations.store import verify

    report = verify(args.path)
    state = "complete" if report["complete"] else "partial (re-run the capture to finish it)"
    print(f"OK: {args.path}: {report['rows']} rows in {report['shards']} shards, {report['files']} files verified; {state}")
    return 0
