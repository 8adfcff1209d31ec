"""``replab train-sae`` / ``replab eval-sae``: train an SAE on a store hook (or take an existing replab or SAELens
one), evaluate it and analyse its features in one run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# fields of SAEConfig itself are set by the trainer (d_in, d_sae) or by their own flags, not per architecture
_COMMON = ("d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations")


def register(subparsers) -> None:
    """Add the ``train-sae`` and ``eval-sae`` subcommands to a ``argparse`` subparsers object."""
    from replab.configs import add_variant_flags
    from replab.saes.config import ARCH_CONFIGS

    p = subparsers.add_parser(
        "train-sae",
        help="Train a sparse autoencoder on an activation store hook, then evaluate it and analyse its features.",
        description="Train an SAE on one hook of an ActivationStore. Writes a run directory (kind 'sae') holding "
        "cfg.json + sae_weights.safetensors (SAELens format), training_log.csv, metrics in run.json, "
        "features/summary.json and features/latent_<i>.json.",
    )
    p.add_argument("--store", required=True, help="activation store directory (from `replab capture`)")
    p.add_argument("--hook", help="hook to train on (optional if the store holds one hook)")
    p.add_argument("--distribute-hooks", action="store_true",
                   help="one SAE per hook (--hooks, default every hook of the store), hooks spread over the torchrun "
                   "ranks; run directories <out>/<hook>")
    p.add_argument("--hooks", help="comma list of hooks for --distribute-hooks (default: all)")
    p.add_argument("--arch", default="topk", choices=sorted(ARCH_CONFIGS), help="SAE architecture (default topk)")
    p.add_argument("--d-sae", type=int, required=True, help="number of latents")
    p.add_argument("--out", help="run directory (default: <store parent>/sae-<arch>)")
    # architecture settings: one flag per field of the architectures' config dataclasses (replab.configs)
    p.set_defaults(arch_flags=add_variant_flags(p, ARCH_CONFIGS, skip=_COMMON))
    p.add_argument("--steps", type=int, help="optimiser steps (default: one epoch)")
    p.add_argument("--tokens", type=int, help="tokens (rows) to train on, instead of --steps")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-4 / sqrt(d_sae / 2^14))")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-normalize", action="store_true", help="do not rescale inputs to mean norm sqrt(d_in)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    _add_eval_flags(p)
    p.set_defaults(func=run)

    e = subparsers.add_parser(
        "eval-sae",
        help="Evaluate an existing SAE (replab or SAELens directory) on a store hook and analyse its features.",
        description="Evaluate an SAE directory (cfg.json + sae_weights.safetensors, from replab or SAELens 2-6) on "
        "one hook of an ActivationStore. Writes a run directory (kind 'sae', as train-sae writes without the "
        "training log) that the app browses beside trained SAEs.",
    )
    e.add_argument("--sae", required=True, help="SAE directory (cfg.json + sae_weights.safetensors)")
    e.add_argument("--store", required=True, help="activation store directory (from `replab capture`)")
    e.add_argument("--hook", help="store hook (default: the SAE's hook_name, or the store's only hook)")
    e.add_argument("--out", help="run directory (default: <store parent>/sae-eval-<SAE directory name>)")
    _add_eval_flags(e)
    e.set_defaults(func=run_eval)


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``train-sae`` and ``eval-sae`` share: model, device and the evaluation's size."""
    p.add_argument("--model", help="model for CE metrics, tokens and logit effects (default: the store's model)")
    p.add_argument("--no-model", action="store_true", help="skip CE metrics and logit effects")
    p.add_argument("--device", help="device (default cpu)")
    p.add_argument("--eval-prompts", type=int, default=256, help="prompts (from the store's text metadata) for CE")
    p.add_argument("--top-n", type=int, default=256, help="latents to analyse in detail")


def _arch_config(args: argparse.Namespace) -> dict[str, Any]:
    from replab.configs import variant_values

    return variant_values(args, args.arch_flags, args.arch, flag_of="--arch")


def _load_model(args: argparse.Namespace, store):
    """The model for CE metrics: ``--model`` or the store's, checked against the store's weights hash."""
    from replab.errors import ModelLoadError
    from replab.models import load_model

    if args.no_model:
        return None
    name = args.model or (store.manifest or {}).get("model")
    if not name:
        raise ModelLoadError("The store's manifest names no model; pass --model NAME or --no-model.")
    try:
        model = load_model(name, device=args.device)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc} (Pass --no-model to train without CE metrics.)") from None
    store.check_model(model, "pass the model the store was made with (--model) or --no-model")
    return model


def run(args: argparse.Namespace) -> int:
    """Execute ``train-sae``; returns the exit code."""
    from replab.activations import ActivationStore
    from replab.saes.config import ARCH_CONFIGS

    store = ActivationStore.open(args.store)  # imports no torch: a bad hook or setting fails fast
    hook = args.hook or (store.hooks[0] if len(store.hooks) == 1 else None)
    if hook is not None and not args.distribute_hooks:
        ARCH_CONFIGS[args.arch](d_in=store.d(hook), d_sae=args.d_sae, **_arch_config(args))

    from replab.saes.runkind import train_store_sae, train_store_saes

    model = _load_model(args, store)
    out = Path(args.out) if args.out else Path(store.path).parent / f"sae-{args.arch}"
    config = {"command": "train-sae", **{k: v for k, v in vars(args).items() if k not in ("func", "arch_flags")}}
    settings = dict(
        architecture=args.arch, d_sae=args.d_sae, model=model, arch_config=_arch_config(args), run_config=config,
        steps=args.steps, tokens=args.tokens, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        normalize=not args.no_normalize, checkpoint_every=args.checkpoint_every, resume=args.resume,
        device=args.device, eval_prompts=args.eval_prompts, top_n=args.top_n)
    if args.distribute_hooks:
        hooks = None if args.hooks is None else [h.strip() for h in args.hooks.split(",") if h.strip()]
        runs = {h: (out / h, r) for h, r in train_store_saes(store, hooks, out=out, **settings).items()}
    else:
        from replab import distributed

        runs = {args.hook: (out, train_store_sae(store, out=out, hook=args.hook, **settings))}
        if not distributed.is_main():  # DDP: rank 0 reports the one run
            return 0
    for path, run_dir in runs.values():
        _report(f"SAE ({args.arch}, d_sae={args.d_sae}) written to {path}", run_dir, model)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Execute ``eval-sae``; returns the exit code."""
    from replab.activations import ActivationStore
    from replab.saes import load
    from replab.saes.runkind import evaluate_store_sae, sae_rows

    store = ActivationStore.open(args.store)
    sae = load(args.sae)
    sae_rows(store, sae, args.hook, where=args.sae)  # a wrong directory, hook or width fails before the model loads
    model = _load_model(args, store)
    out = Path(args.out) if args.out else Path(store.path).parent / f"sae-eval-{Path(args.sae).resolve().name}"
    config = {"command": "eval-sae", **{k: v for k, v in vars(args).items() if k != "func"}}
    run_dir = evaluate_store_sae(store, sae, out=out, hook=args.hook, model=model, run_config=config,
                                 device=args.device, eval_prompts=args.eval_prompts, top_n=args.top_n)
    _report(f"SAE ({sae.architecture}, d_sae={sae.d_sae}) from {args.sae} evaluated into {out}", run_dir, model)
    return 0


def _report(title: str, run_dir, model) -> None:
    """Print a finished SAE run's headline metrics."""
    metrics = run_dir.info["metrics"]
    print(title)
    print("  " + "  ".join(f"{k}={metrics[k]:.4g}" for k in ("fvu", "l0", "dead_fraction", "ce_recovered", "kl_with_sae")
                           if k in metrics))
    if model is not None and "ce_clean" not in metrics:
        print("  (no CE metrics: the store has neither 'text' metadata nor every position of its contexts)")
