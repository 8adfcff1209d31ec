"""``replab.lenses.train``: fit a lens from an activation store (cached) or live data.

Tuned lens: KL(final-layer distribution || lens distribution) summed over layers, tuned-lens's
recipe: SGD with Nesterov momentum 0.9, lr = 1.0 x (1 - momentum) (tuned-lens scales the lr that
way), weight decay 1e-3, linear warm-up (10% of the steps) then linear decay, gradient clipping at
1.0. Attention lens: the anchor's Adam at lr 1e-3 on the same KL at the rows given (the last
position when live). Linear shortcut: closed-form least squares on ``steps * batch_size`` rows.
The KL and its gradient are computed in row chunks for all layers at once (``replab.lenses.loss``),
so no ``[rows, d_vocab]`` tensor is kept.
Batches are addressed by step (``replab.lenses.data``), which makes checkpoints resume exactly and
DDP ranks read disjoint slices of one global batch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from replab import distributed
from replab.checkpoints import latest_state, load_checkpoint, save_checkpoint
from replab.errors import DataError, RunDirError
from replab.kernels import kl_from_hidden
from replab.lenses.attention import AttentionLens, AttentionLensConfig
from replab.lenses.base import Lens, final_hook, registry, unembedding
from replab.lenses.data import is_store, row_stream
from replab.lenses.logit import LogitLens
from replab.lenses.loss import kl_backward
from replab.lenses.shortcut import LinearShortcut
from replab.lenses.tuned import TunedLens, TunedLensConfig
from replab.lenses.config import LensTrainConfig
from replab.protocols import HookedModel


def _make(kind: str, model, form: str | None) -> Lens:
    if kind == "tuned":
        return TunedLens(model, TunedLensConfig())
    if kind == "attention":
        return AttentionLens(model, AttentionLensConfig(form=form or "full"))
    kinds = registry()
    if kind in kinds:
        return kinds[kind](model)
    raise DataError(f"Unknown lens kind {kind!r}; choose one of {sorted(kinds)}.")


def _target(model, acts: dict[str, torch.Tensor]):
    """``(ln_final(last hidden state), W_U, b_U)``: what gives the model's own distribution, float32, no graph."""
    W_U, b_U = unembedding(model)
    with torch.no_grad():
        h = model.ln_final(acts[final_hook(model)]).float()
    return h, W_U.float(), None if b_U is None else b_U.float()


def lens_loss(lens: Lens, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the lens's layers of KL(model distribution || lens distribution) on one batch of rows.

    Differentiable (autograd through ``replab.kernels.kl_from_hidden``); training uses the equal but
    cheaper ``replab.lenses.loss.kl_backward``.
    """
    target, W_U, b_U = _target(lens.model, acts)
    total = 0.0
    for layer in lens.layers():
        h, W, b = lens.decoder_inputs(acts[lens.input_hook(layer)], layer)
        total = total + kl_from_hidden(h.float(), W.float(), None if b is None else b.float(), target_h=target,
                                       target_W=W_U, target_b=b_U)
    return total


def _lr_factor(steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))
    return factor


def _step(lens: Lens, opt: torch.optim.Optimizer, acts: dict[str, torch.Tensor], share: float) -> float:
    """One optimiser step on this rank's rows; returns the global batch's loss.

    ``share`` is this rank's fraction of the global batch: its mean-loss gradient is weighted by it
    and summed over ranks, which gives the gradient of the global batch's mean loss (DDP; 1.0 alone).
    """
    opt.zero_grad(set_to_none=True)
    decoders = [lens.decoder_inputs(acts[lens.input_hook(layer)], layer) for layer in lens.layers()]
    reported = kl_backward(decoders, _target(lens.model, acts)).sum().reshape(1) * share
    if distributed.world_size() > 1:
        for p in lens.parameters():
            if p.grad is not None:
                distributed.all_reduce_sum(p.grad.mul_(share))
        distributed.all_reduce_sum(reported)
    torch.nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
    opt.step()
    return float(reported)


def train(kind: str, model: HookedModel, data, *, steps: int = LensTrainConfig.steps, batch_size: int = LensTrainConfig.batch_size,
          lr: float | None = LensTrainConfig.lr, weight_decay: float = LensTrainConfig.weight_decay, momentum: float = LensTrainConfig.momentum,
          warmup: int | None = LensTrainConfig.warmup, form: str | None = LensTrainConfig.form, positions: str | None = LensTrainConfig.positions,
          context: int | None = LensTrainConfig.context, seed: int = LensTrainConfig.seed, out: str | os.PathLike | None = None,
          checkpoint_every: int | None = LensTrainConfig.checkpoint_every, resume: bool = LensTrainConfig.resume,
          keep_checkpoints: int = LensTrainConfig.keep_checkpoints, progress: bool = True) -> Lens:
    """Train a lens of ``kind`` (``"tuned"``, ``"attention"``, ``"shortcut"``; ``"logit"`` has nothing to fit).

    Under ``torchrun`` (an initialised process group) the tuned and attention lenses train with DDP:
    every rank reads its slice of each global batch (store rows, or the corpus items holding them),
    gradients are all-reduced, and the result equals one process with the same ``batch_size``.

    Args:
        kind: the lens kind. model: the hooked model the lens reads.
        data: an ``ActivationStore`` holding the lens's hooks and the last hidden state (cached: no
            forward per step) or anything ``run_batches`` reads (prompt set, corpus, spec, texts).
        steps, batch_size: optimiser steps and rows (tokens) per step (global, over all ranks).
        lr: default 1.0 x (1 - momentum) for the tuned lens (SGD Nesterov), 1e-3 for the attention lens (Adam).
        weight_decay, momentum, warmup: tuned-lens's settings (warm-up default: 10% of the steps).
        form: attention lens form, ``"full"`` or ``"translator"``.
        positions: live rows, ``"all"`` (default) or ``"last"`` (the attention lens's default, as the anchor).
        out: a run directory (kind ``lens``): ``lens/`` (the lens), ``run.json`` with the settings and metrics.
        checkpoint_every: steps between checkpoints in ``out/checkpoints/`` (lens and optimizer state in
            safetensors, the rest in JSON); ``keep_checkpoints`` most recent are kept.
        resume: continue from the latest checkpoint in ``out`` (same settings); the result equals an
            uninterrupted run.

    Returns:
        The trained lens (in eval mode), ``lens.metrics`` the training metrics.

    Raises:
        DataError: bad settings. RunDirError: a checkpoint written with other settings.
        StoreError: ``data`` is a store captured from other weights than ``model``'s.
    """
    if steps < 1 or batch_size < 1:
        raise DataError(f"steps and batch_size must be positive; got {steps}, {batch_size}.")
    if (checkpoint_every or resume) and out is None:
        raise DataError("checkpoint_every and resume need out=<run directory> to keep checkpoints in.")
    world, me = distributed.world_size(), distributed.rank()
    if batch_size < world:
        raise DataError(f"batch_size {batch_size} is smaller than the {world} ranks; each rank needs a row.")
    if is_store(data):
        data.check_model(model, "train the lens with the model the store was captured from")
    torch.manual_seed(seed)
    lens = _make(kind, model, form)
    positions = positions or ("last" if kind == "attention" else "all")
    hooks = sorted({lens.input_hook(layer) for layer in lens.layers()} | {final_hook(model)})
    stream = row_stream(model, data, hooks, batch_size, positions=positions, seed=seed, context=context)
    config = {"kind": kind, "lens_config": asdict(lens.config), "steps": steps, "batch_size": batch_size,
              "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "warmup": warmup, "positions": positions,
              "seed": seed, "data": stream.describe(), "cached": is_store(data), "world_size": world}
    if world > 1:
        if isinstance(lens, LinearShortcut):
            raise DataError("The linear shortcut is a closed-form fit, not DDP training; run it in one process.")
        distributed.check_same(config, "lens training")
    if resume and out is not None:  # refuse other settings before run.json is rewritten
        found = latest_state(out)
        if found is not None and found[0]["config"] != json.loads(json.dumps(config)):
            raise RunDirError(f"The checkpoints in {out} were written by a run with other settings; resume "
                              "with the same ones, or train into another --out.")
    run = None
    if out is not None and distributed.is_main():
        from replab.runs import Run
        run = Run.create(out, "lens", config, model=model)
    t0 = time.perf_counter()
    metrics: dict = {"n_params": lens.n_params()}
    if isinstance(lens, LinearShortcut):
        rows = [stream.batch(step) for step in range(steps)]
        final = torch.cat([r[final_hook(model)] for r in rows])
        for layer in lens.layers():
            lens.fit_layer(layer, torch.cat([r[lens.input_hook(layer)] for r in rows]), final)
        metrics["tokens"] = int(final.shape[0])
    elif not isinstance(lens, LogitLens):
        if kind == "attention":
            opt = torch.optim.Adam(lens.parameters(), lr=lr or 1e-3)
        else:
            opt = torch.optim.SGD(lens.parameters(), lr=lr or 1.0 * (1 - momentum), momentum=momentum,
                                  nesterov=True, weight_decay=weight_decay)
        base_lr = opt.param_groups[0]["lr"]
        factor = _lr_factor(steps, max(1, steps // 10) if warmup is None else warmup)
        start, loss = 0, float("nan")
        if resume:
            state = load_checkpoint(out, lens, opt)
            if state is not None:
                start, loss = state["step"], state["train_kl"]
        bar = tqdm(total=steps * batch_size, initial=start * batch_size, unit="tok", unit_scale=True,
                   desc=f"{kind} lens", disable=not progress)
        with bar:
            for step in range(start, steps):
                acts = stream.batch(step, me, world)
                for group in opt.param_groups:
                    group["lr"] = base_lr * factor(step)
                loss = _step(lens, opt, acts, len(acts[hooks[0]]) / batch_size)
                bar.update(batch_size)
                bar.set_postfix(kl=f"{loss:.4f}")
                if run is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
                    save_checkpoint(out, step + 1, lens, opt, {"config": config, "train_kl": loss},
                                    keep=keep_checkpoints)
        metrics.update(train_kl=loss, tokens=(steps - start) * batch_size, resumed_from_step=start)
    seconds = time.perf_counter() - t0
    metrics.update(seconds=seconds)
    if metrics.get("tokens"):  # the logit lens reads no data
        metrics.update(tokens_per_s=metrics["tokens"] / max(seconds, 1e-9))
    lens.eval()
    if run is not None:
        lens.save(Path(out) / "lens")
        run.finish(metrics)
    lens.metrics = metrics
    return lens
