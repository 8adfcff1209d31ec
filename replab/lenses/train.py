"""``replab.lenses.train``: fit a lens from an activation store (cached) or live data.

Tuned lens: KL(final-layer distribution || lens distribution) summed over layers, tuned-lens's
recipe: SGD with Nesterov momentum 0.9, lr = 1.0 x (1 - momentum) (tuned-lens scales the lr that
way), weight decay 1e-3, linear warm-up (10% of the steps) then linear decay, gradient clipping at
1.0. Attention lens: the anchor's Adam at lr 1e-3 on the same KL at the rows given (the last
position when live). Linear shortcut: closed-form least squares on ``steps * batch_size`` rows.
The KL is chunked (``replab.kernels.kl_from_hidden``), so no ``[rows, d_vocab]`` tensor is kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from replab.errors import DataError
from replab.kernels import kl_from_hidden
from replab.lenses.attention import AttentionLens, AttentionLensConfig
from replab.lenses.base import REGISTRY, Lens, final_hook, unembedding
from replab.lenses.data import is_store, row_batches
from replab.lenses.logit import LogitLens
from replab.lenses.shortcut import LinearShortcut
from replab.lenses.tuned import TunedLens, TunedLensConfig


def _make(kind: str, model, form: str | None) -> Lens:
    if kind == "tuned":
        return TunedLens(model, TunedLensConfig())
    if kind == "attention":
        return AttentionLens(model, AttentionLensConfig(form=form or "full"))
    if kind in REGISTRY:
        return REGISTRY[kind](model)
    raise DataError(f"Unknown lens kind {kind!r}; choose one of {sorted(REGISTRY)}.")


def lens_loss(lens: Lens, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the lens's layers of KL(model distribution || lens distribution) on one batch of rows."""
    model = lens.model
    W_U, b_U = unembedding(model)
    with torch.no_grad():
        target = model.ln_final(acts[final_hook(model)]).float()
    total = 0.0
    for layer in lens.layers():
        h, W, b = lens.decoder_inputs(acts[lens.input_hook(layer)], layer)
        total = total + kl_from_hidden(h.float(), W.float(), None if b is None else b.float(), target_h=target,
                                       target_W=W_U.float(), target_b=None if b_U is None else b_U.float())
    return total


def _schedule(steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))
    return factor


def train(kind: str, model, data, *, steps: int = 250, batch_size: int = 1024, lr: float | None = None,
          weight_decay: float = 1e-3, momentum: float = 0.9, warmup: int | None = None, form: str | None = None,
          positions: str | None = None, context: int | None = None, seed: int = 0, out: str | os.PathLike | None = None,
          progress: bool = True) -> Lens:
    """Train a lens of ``kind`` (``"tuned"``, ``"attention"``, ``"shortcut"``; ``"logit"`` has nothing to fit).

    Args:
        kind: the lens kind. model: the hooked model the lens reads.
        data: an ``ActivationStore`` holding the lens's hooks and the last hidden state (cached: no
            forward per step) or anything ``run_batches`` reads (prompt set, corpus, spec, texts).
        steps, batch_size: optimiser steps and rows (tokens) per step.
        lr: default 1.0 x (1 - momentum) for the tuned lens (SGD Nesterov), 1e-3 for the attention lens (Adam).
        weight_decay, momentum, warmup: tuned-lens's settings (warm-up default: 10% of the steps).
        form: attention lens form, ``"full"`` or ``"translator"``.
        positions: live rows, default ``"all"`` (``"last"`` for the attention lens, as the anchor).
        out: a run directory (kind ``lens``): ``lens/`` (the lens), ``run.json`` with the settings and metrics.

    Returns:
        The trained lens (in eval mode).
    """
    if steps < 1 or batch_size < 1:
        raise DataError(f"steps and batch_size must be positive; got {steps}, {batch_size}.")
    torch.manual_seed(seed)
    lens = _make(kind, model, form)
    positions = positions or ("last" if kind == "attention" else "all")
    config = {"kind": kind, "lens_config": asdict(lens.config), "steps": steps, "batch_size": batch_size,
              "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "warmup": warmup, "positions": positions,
              "seed": seed, "data": str(getattr(data, "path", None) or getattr(data, "name", None) or type(data).__name__),
              "cached": is_store(data)}
    run = None
    if out is not None:
        from replab.runs import Run
        run = Run.create(out, "lens", config, model=model)
    hooks = sorted({lens.input_hook(layer) for layer in lens.layers()} | {final_hook(model)})
    batches = row_batches(model, data, hooks, batch_size, positions=positions, seed=seed, context=context)
    t0 = time.perf_counter()
    metrics: dict = {"n_params": lens.n_params()}
    if isinstance(lens, LogitLens):
        pass
    elif isinstance(lens, LinearShortcut):
        rows = [next(batches) for _ in range(steps)]
        final = torch.cat([r[final_hook(model)] for r in rows])
        for layer in lens.layers():
            lens.fit_layer(layer, torch.cat([r[lens.input_hook(layer)] for r in rows]), final)
        metrics["tokens"] = int(final.shape[0])
    else:
        if kind == "attention":
            opt = torch.optim.Adam(lens.parameters(), lr=lr or 1e-3)
        else:
            opt = torch.optim.SGD(lens.parameters(), lr=lr or 1.0 * (1 - momentum), momentum=momentum,
                                  nesterov=True, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps, max(1, steps // 10) if warmup is None else warmup))
        bar = tqdm(total=steps * batch_size, unit="tok", unit_scale=True, desc=f"{kind} lens", disable=not progress)
        with bar:
            for _ in range(steps):
                loss = lens_loss(lens, next(batches))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
                opt.step()
                sched.step()
                bar.update(batch_size)
                bar.set_postfix(kl=f"{loss.item():.4f}")
        metrics.update(train_kl=loss.item(), tokens=steps * batch_size)
    seconds = time.perf_counter() - t0
    metrics.update(seconds=seconds, tokens_per_s=metrics.get("tokens", 0) / max(seconds, 1e-9))
    lens.eval()
    if run is not None:
        lens.save(Path(out) / "lens")
        run.finish(metrics)
    lens.metrics = metrics
    return lens
