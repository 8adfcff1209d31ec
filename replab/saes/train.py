"""Train any registered SAE on a ``[n, d_in]`` tensor or an ActivationStore hook.

Adam with linear warm-up and a final linear decay, gradient clipping, optional input
normalisation to a mean norm of ``sqrt(d_in)`` (folded into the weights at the end, so the
returned/saved SAE takes raw activations), ``b_dec`` initialised from the data, unit-norm
decoder rows where the architecture needs them, dead-latent tracking (fed to AuxK), and
checkpoints (safetensors + JSON, optimizer state included) that ``resume=True`` continues from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from replab import distributed
from replab.checkpoints import latest_state, load_checkpoint, save_checkpoint
from replab.errors import DataError, ReplabError, RunDirError
from replab.runs import Run
from replab.saes import io
from replab.saes.base import SAE, TrainContext
from replab.saes.data import Rows, rows


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings.

    Attributes:
        batch_size: rows per step.
        steps: optimiser steps (or give ``tokens``; neither: one epoch).
        tokens: rows to train on; ``steps = ceil(tokens / batch_size)``.
        lr: Adam learning rate (``None``: ``2e-4 / sqrt(d_sae / 2**14)``, dictionary_learning/sparsify).
        betas: Adam betas.
        warmup_steps: linear warm-up (``None``: ``min(1000, 5%)`` of the steps).
        decay_fraction: final fraction of the steps over which the lr decays linearly to 0.
        grad_clip: max gradient norm (0 disables).
        normalize: scale inputs so ``E||x|| = sqrt(d_in)`` while training (folded in at the end; SAELens's
            ``normalize_activations="expected_average_only_in"``). On a store ``E||x||`` is the mean over every
            row recorded at capture (``store.stats(hook)["mean_norm"]``); on a tensor, over ``init_rows`` rows.
        b_dec_init: ``"geometric_median"``, ``"mean"`` or ``"zero"``.
        init_rows: rows sampled to initialise ``b_dec`` (and estimate the scale when no statistics are recorded).
        dead_after_tokens: a latent that has not fired for this many tokens counts as dead.
        seed: data-order seed.
        log_every: steps between logged metrics.
        checkpoint_every: steps between checkpoints (needs ``out``; one is always written at the end).
        keep_checkpoints: most recent checkpoints kept on disk.
        device: training device (default: where the SAE is).
        progress: show a tqdm bar (tokens/s).
    """

    batch_size: int = 4096
    steps: int | None = None
    tokens: int | None = None
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = None
    decay_fraction: float = 0.2
    grad_clip: float = 1.0
    normalize: bool = True
    b_dec_init: str = "geometric_median"
    init_rows: int = 65536
    dead_after_tokens: int = 10_000_000
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.steps is not None and self.tokens is not None:
            raise DataError("Give steps or tokens, not both.")
        if (self.steps is not None and self.steps < 1) or (self.tokens is not None and self.tokens < 1):
            raise DataError("steps and tokens must be >= 1.")
        if self.b_dec_init not in ("geometric_median", "mean", "zero"):
            raise DataError(f"b_dec_init must be 'geometric_median', 'mean' or 'zero', got {self.b_dec_init!r}.")
        if not 0 <= self.decay_fraction <= 1:
            raise DataError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}.")
        object.__setattr__(self, "betas", tuple(self.betas))

    def total_steps(self, n_rows: int) -> int:
        if self.steps is not None:
            return self.steps
        return math.ceil((self.tokens if self.tokens is not None else n_rows) / self.batch_size)

    def total_rows(self, n_rows: int) -> int:
        """Rows the planned steps read: an epoch is ``ceil(n_rows / batch_size)`` steps, its last one partial."""
        per_epoch = math.ceil(n_rows / self.batch_size)
        epochs, steps = divmod(self.total_steps(n_rows), per_epoch)
        return epochs * n_rows + min(steps * self.batch_size, n_rows)

    def learning_rate(self, d_sae: int) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)

    def lr_factor(self, step: int, total: int) -> float:
        """Warm-up ramp, then 1, then linear decay to 0 over ``decay_fraction`` of the run."""
        warm = min(1000, round(0.05 * total)) if self.warmup_steps is None else self.warmup_steps
        factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        decay = round(self.decay_fraction * total)
        if decay > 0 and step >= total - decay:
            factor = min(factor, (total - step) / decay)
        return factor


@dataclass
class TrainResult:
    """What ``train`` returns.

    Attributes:
        sae: the trained SAE (normalisation folded in: it takes raw activations).
        history: logged metrics, one dict per ``log_every`` steps.
        metrics: final training metrics (steps, tokens, seconds, tokens_per_s, last losses, ...).
        run: the run directory written to, if ``out`` was given.
    """

    sae: SAE
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    run: Run | None = None


def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance to the rows of ``x`` [n, d].

    Inside a process group the rows are every rank's ``x`` together (the sums are all-reduced),
    so DDP ranks holding slices of one sample get the median of the whole sample.
    """
    x = x.double()
    n = _global_sum(x.new_tensor(float(x.shape[0])))
    point = _global_sum(x.sum(0)) / n
    for _ in range(iters):
        weights = 1.0 / (x - point).norm(dim=-1).clamp_min(1e-12)
        new = _global_sum((weights[:, None] * x).sum(0)) / _global_sum(weights.sum())
        if (new - point).norm() <= tol * max(1.0, float(point.norm())):
            return new.float()
        point = new
    return point.float()


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the ranks (a fresh tensor; ``x`` itself in one process)."""
    return distributed.all_reduce_sum(x.clone()) if distributed.world_size() > 1 else x


def check_resume(out: str | os.PathLike | Run | None, sae: SAE) -> None:
    """Refuse, before anything is written, to resume ``out``'s newest checkpoint with an SAE of another shape.

    Raises:
        RunDirError: the checkpoint is for another architecture, ``d_in`` or ``d_sae`` (the message names both).
    """
    found = None if out is None else latest_state(out.path if isinstance(out, Run) else out)
    if found is not None:
        _check_checkpoint(sae)(*found)


def _check_checkpoint(sae: SAE) -> Callable[[dict[str, Any], Path], None]:
    def check(state: dict[str, Any], ck: Path) -> None:
        if (state.get("architecture"), state.get("d_in"), state.get("d_sae")) != (sae.architecture, sae.d_in, sae.d_sae):
            raise RunDirError(
                f"Checkpoint {ck} is for a {state.get('architecture')} SAE with d_in={state.get('d_in')}, "
                f"d_sae={state.get('d_sae')}, not this {sae.architecture} SAE ({sae.d_in}, {sae.d_sae}). "
                "Use another --out or delete the checkpoints to start over."
            )
    return check


def _batches(data: Rows, batch_size: int, seed: int, epoch: int, skip: int,
             part: tuple[int, int]) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """Endless ``(epoch, index_in_epoch, global_rows, this rank's slice)``; epoch ``e`` is shuffled with seed ``seed + e``."""
    while True:
        for i, (n_global, batch) in enumerate(data.shuffled(batch_size, seed + epoch, part)):
            if i >= skip:
                yield epoch, i, n_global, batch
        epoch, skip = epoch + 1, 0


def _with_metadata(sae: SAE, data: Rows) -> None:
    """Record the hook (and the store's model) in ``sae.cfg.metadata`` where missing."""
    from replab.models.hooks import hook_layer

    meta = dict(sae.cfg.metadata)
    if data.hook:
        meta.setdefault("hook_name", data.hook)
        if hook_layer(data.hook) is not None:
            meta.setdefault("hook_layer", hook_layer(data.hook))
    if data.store is not None:
        manifest = data.store.manifest or {}
        if manifest.get("model"):
            meta.setdefault("model_name", manifest["model"])
        meta.setdefault("store", str(getattr(data.store, "path", "")))
    sae.cfg = dataclasses.replace(sae.cfg, metadata=meta)


@torch.no_grad()
def _initialise(sae: SAE, data: Rows, cfg: TrainConfig, device, part: tuple[int, int]) -> float:
    """Set the input scale (from the store's recorded mean norm, else a sample's) and ``b_dec``; returns the
    scale (1.0 without normalisation).

    Each rank reads its ``part`` of the one seeded sample; norms, sums and the geometric median's
    sums are reduced across ranks, so every rank gets the one-process scale and ``b_dec``.
    """
    sample = data.sample(cfg.init_rows, cfg.seed, part).to(device)
    count = _global_sum(torch.tensor(float(sample.shape[0]), dtype=torch.float64, device=device))
    scale = 1.0
    if cfg.normalize:
        recorded = data.recorded_mean_norm()  # every row, recorded at capture: no rescan, the same on every rank
        mean_norm = float(_global_sum(sample.norm(dim=-1).double().sum()) / count) if recorded is None else recorded
        if mean_norm == 0:
            raise DataError("Every sampled activation row is zero; check the hook and the capture.")
        scale = math.sqrt(sae.d_in) / mean_norm
    sample = sample * scale
    if cfg.b_dec_init == "mean":
        sae.b_dec.copy_(_global_sum(sample.double().sum(0)) / count)
    elif cfg.b_dec_init == "geometric_median":
        sae.b_dec.copy_(geometric_median(sample))
    return scale


def train(
    sae: SAE,
    data,
    *,
    hook: str | None = None,
    batch_size: int = 4096,
    steps: int | None = None,
    tokens: int | None = None,
    lr: float | None = None,
    out: str | os.PathLike | Run | None = None,
    resume: bool = False,
    **settings: Any,
) -> TrainResult:
    """Train ``sae`` in place and return it with its training log.

    Args:
        sae: an SAE from ``replab.saes.create`` (or a loaded one to fine-tune).
        data: ``[n, d_in]`` float tensor/array, or an ActivationStore (read in shuffled batches,
            never loaded whole).
        hook: the store hook to train on (optional when the store has a single hook).
        batch_size, steps, tokens, lr: see ``TrainConfig``.
        out: run directory (kind ``"sae"``) for checkpoints, the SAE files and the training
            log; a ``Run`` is written into but not finished, so a caller can add evaluation.
        resume: continue from the latest checkpoint in ``out`` if there is one.
        **settings: any other ``TrainConfig`` field (``warmup_steps``, ``normalize``,
            ``b_dec_init``, ``dead_after_tokens``, ``checkpoint_every``, ``device``, ``progress``...).

    Returns:
        A ``TrainResult``; ``result.sae`` is ``sae``, normalisation folded in.

    Raises:
        DataError: bad data or settings; ReplabError: the loss became NaN (lower ``lr``).
    """
    from tqdm.auto import tqdm

    try:
        cfg = TrainConfig(batch_size=batch_size, steps=steps, tokens=tokens, lr=lr, **settings)
    except TypeError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
        raise DataError(f"Unknown training setting ({exc}); known settings: {known}.") from None
    source = rows(data, hook, sae.d_in)
    world, me = distributed.world_size(), distributed.rank()
    if world > 1:  # DDP: every rank follows the same global batch order and reads and trains on its slice of each batch
        shared = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "progress")}
        distributed.check_same({"train": shared, "sae": sae.cfg.to_dict(), "data": source.describe()}, "SAE training")
    device = torch.device(cfg.device) if cfg.device else sae.W_dec.device
    sae.to(device).train()
    _with_metadata(sae, source)
    total = cfg.total_steps(source.n)
    base_lr = cfg.learning_rate(sae.d_sae)
    opt = torch.optim.Adam(sae.parameters(), lr=base_lr, betas=cfg.betas, fused=True)

    ckpt_root = None if out is None else (out.path if isinstance(out, Run) else Path(out))
    if resume:
        check_resume(ckpt_root, sae)
    if not distributed.is_main():  # only rank 0 writes the run directory; every rank reads its checkpoints
        out = None
    owns_run = out is not None and not isinstance(out, Run)
    config = {"architecture": sae.architecture, "sae": sae.cfg.to_dict(), "train": dataclasses.asdict(cfg),
              "data": source.describe(), "lr": base_lr, "total_steps": total}
    run = Run.create(out, "sae", config) if owns_run else out
    if run is not None:
        run.write_json("train_config.json", config)
    if cfg.checkpoint_every and ckpt_root is None:
        raise DataError("checkpoint_every needs out=<run directory> to write checkpoints to.")

    state = load_checkpoint(ckpt_root, sae, opt, check=_check_checkpoint(sae),
                            load=lambda t, ck: sae.load_tensors(t, str(ck))) if (resume and ckpt_root is not None) else None
    if state:
        tokens_since_fired = state["extra"]["tokens_since_fired"].to(device)
        step, seen, scale, history = state["step"], state["tokens"], state["scale"], state["history"]
        epoch, skip = state["epoch"], state["batch_in_epoch"] + 1
    else:
        scale = _initialise(sae, source, cfg, device, (me, world))
        step, seen, history, epoch, skip = 0, 0, [], 0, 0
        tokens_since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)

    batches = _batches(source, cfg.batch_size, cfg.seed, epoch, skip, (me, world))
    planned = cfg.total_rows(source.n)
    bar = tqdm(total=planned, initial=min(seen, planned), unit="tok",
               unit_scale=True, desc=f"train {sae.architecture}", disable=not cfg.progress)
    t0, seen0, position = time.perf_counter(), seen, (epoch, skip - 1)
    while step < total:
        epoch_i, batch_i, n_global, x = next(batches)
        position = (epoch_i, batch_i)
        x = x.to(device) * scale
        for group in opt.param_groups:
            group["lr"] = base_lr * cfg.lr_factor(step, total)
        ctx = TrainContext(step=step, total_steps=total, dead_mask=tokens_since_fired >= cfg.dead_after_tokens)
        output = _optimiser_step(sae, opt, x, ctx, cfg.grad_clip, x.shape[0] / n_global)
        with torch.no_grad():
            tokens_since_fired += n_global
            tokens_since_fired[distributed.all_reduce_sum(output.fired.to(torch.int32)) > 0] = 0
        step, seen = step + 1, seen + n_global
        bar.update(n_global)
        if step % cfg.log_every == 0 or step == total:
            history.append(_log_entry(step, seen, output, x, opt, tokens_since_fired, cfg, seen - seen0, t0))
            bar.set_postfix(loss=f"{history[-1]['loss']:.4g}", l0=f"{history[-1]['l0']:.1f}")
            if run is not None:
                run.log_metrics({"progress_step": step, "progress_tokens": seen})
        if run is not None and (step == total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
            trainer = {"step": step, "tokens": seen, "scale": scale, "epoch": position[0], "batch_in_epoch": position[1],
                       "architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae, "history": history}
            save_checkpoint(run.path, step, sae, opt, trainer, extra={"tokens_since_fired": tokens_since_fired},
                            keep=cfg.keep_checkpoints)
    bar.close()
    seconds = time.perf_counter() - t0

    if scale != 1.0:
        sae.fold_input_scale(scale)
    sae.eval()
    last = history[-1] if history else {}
    metrics = {"steps": step, "tokens": seen, "train_seconds": round(seconds, 3),
               "tokens_per_s": round((seen - seen0) / seconds, 1) if seconds > 0 else None, "input_scale": scale,
               **{f"train_{k}": v for k, v in last.items() if k not in ("step", "tokens", "tokens_per_s")}}
    if run is not None:
        _write_outputs(run, sae, history, metrics)
        if owns_run:
            run.finish()
    distributed.barrier()  # every rank returns once rank 0 has written: no rank tears down the group early
    return TrainResult(sae=sae, history=history, metrics=metrics, run=run)


def _optimiser_step(sae: SAE, opt: torch.optim.Optimizer, x: torch.Tensor, ctx: TrainContext, grad_clip: float,
                    share: float = 1.0):
    """Loss, backward, gradient all-reduce, decoder-gradient projection, clipping, Adam step, weight constraints.

    ``share`` is this rank's fraction of the global batch: each rank's mean-loss gradient is weighted by it
    and summed over ranks, giving the gradient of the global batch's mean loss (DDP; 1.0 in one process).
    """
    output = sae.training_loss(x, ctx)
    if not torch.isfinite(output.loss):
        raise ReplabError(
            f"SAE training diverged at step {ctx.step} (loss {float(output.loss.detach())}). Lower lr "
            f"(now {opt.param_groups[0]['lr']:.3g}) or keep normalize=True."
        )
    opt.zero_grad(set_to_none=True)
    output.loss.backward()
    if distributed.world_size() > 1:
        for p in sae.parameters():
            if p.grad is not None:
                distributed.all_reduce_sum(p.grad.mul_(share))
    sae.constrain_gradients()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
    opt.step()
    sae.constrain_weights()
    return output


@torch.no_grad()
def _log_entry(step, seen, output, x, opt, tokens_since_fired, cfg: TrainConfig, new_tokens, t0) -> dict[str, float]:
    """One training-log row over the global batch: per-row means and FVU from sums reduced across ranks."""
    n = x.shape[0]
    names = list(output.terms)
    x64 = x.double()
    local = torch.cat([torch.stack([output.terms[k].double() * n for k in names]
                                   + [output.l0.double() * n, (output.x_hat.double() - x64).pow(2).sum(),
                                      x64.pow(2).sum(), x64.new_tensor(float(n))]), x64.sum(0)])
    total = _global_sum(local)
    k = len(names)
    terms, l0, err, sq, rows, col = total[:k], total[k], total[k + 1], total[k + 2], total[k + 3], total[k + 4:]
    var = (sq - col.pow(2).sum() / rows).clamp_min(1e-12)
    elapsed = time.perf_counter() - t0
    return {
        "step": step,
        "tokens": seen,
        "loss": float(terms.sum() / rows),
        **{name: float(v / rows) for name, v in zip(names, terms)},
        "l0": float(l0 / rows),
        "fvu_batch": float(err / var),
        "dead_fraction": float((tokens_since_fired >= min(cfg.dead_after_tokens, seen)).float().mean()),
        "lr": opt.param_groups[0]["lr"],
        "tokens_per_s": new_tokens / elapsed if elapsed > 0 else float("nan"),
    }


def _write_outputs(run: Run, sae: SAE, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    """SAE files (SAELens format, loadable with ``replab.saes.load(run_dir)``), log table and loss figure."""
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    io.save_to_run(run, sae)
    if history:
        df = pd.DataFrame(history)
        run.write_table("training_log", df)
        fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "L0"))
        fig.add_trace(go.Scatter(x=df["tokens"], y=df["loss"], name="loss"), row=1, col=1)
        fig.add_trace(go.Scatter(x=df["tokens"], y=df["l0"], name="L0"), row=1, col=2)
        fig.update_xaxes(title_text="tokens")
        fig.update_layout(title=f"{sae.architecture} SAE training", showlegend=False)
        run.write_figure("training", fig)
    run.log_metrics(metrics)
