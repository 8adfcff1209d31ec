"""``capture``: run a model over prompts or a corpus and stream chosen activations into a store."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from replab import distributed
from replab.activations import shards
from replab.activations.config import CaptureConfig
from replab.activations.store import ActivationStore
from replab.datasets import PromptSet, TextCorpus
from replab.errors import DataError, StoreError
from replab.models.forward import ForwardBatch, hook_widths, run_batches
from replab.models.hooks import resolve_hooks
from replab.identity import model_id, weights_hash
from replab.models.positions import PositionFn, Positions
from replab.models.sources import as_source
from replab.runs import Run
from replab.protocols import HookedModel


def _columns(fb: ForwardBatch, values: dict[str, torch.Tensor], scales: dict[str, torch.Tensor],
             dtype: str) -> dict[str, np.ndarray]:
    """One batch's rows as the store's files hold them: each hook ``[rows, d]`` encoded to ``dtype``, an int8
    store's ``scale.<hook>`` ``[rows, 1]`` float32, and ``meta.prompt_index`` / ``meta.position`` /
    ``meta.token_id`` ``[rows, 1]``."""
    columns = {h: shards.encode(x, dtype) for h, x in values.items()}
    columns.update({shards.scale_column(h): s.float().numpy()[:, None] for h, s in scales.items()})
    meta = {"prompt_index": fb.items.cpu(), "position": fb.pos.cpu(), "token_id": fb.tokens[fb.item, fb.pos].cpu()}
    columns.update({f"meta.{c}": v.numpy().astype(np.int64)[:, None] for c, v in meta.items()})
    return columns


class _Take:
    """``run_batches``' ``take``: gather the selected rows, cast them to the store dtype and take their statistics
    in one ``gather_cast`` (the fused kernel on CUDA, its torch reference elsewhere).

    The batch is cut where its rows cross a shard boundary (``shards.split_rows``) and each piece gets its own
    statistics buffer, so every shard's statistics file covers exactly its rows; the first ``skip`` rows (already
    stored before a resume) get none. Statistics are of the float32 rows before the cast: float32 atomics on
    CUDA, float64 on the CPU. ``advance`` moves on after a batch is taken into the store.
    """

    def __init__(self, dtype: str, capacity: int, first_row: int, skip: int):
        self.dtype, self.capacity, self.first_row, self.skip = dtype, capacity, first_row, skip
        self.scales: dict[str, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}

    def __call__(self, hook: str, output: torch.Tensor, item: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        from replab.kernels.fused_capture import CaptureStats, gather_cast

        x = output.flatten(2)
        d, n = x.shape[2], item.numel()
        skip = min(self.skip, n)
        pieces = [(0, skip, False)] if skip else []
        for size in shards.split_rows(self.first_row, n - skip, self.capacity):
            lo = pieces[-1][1] if pieces else 0
            pieces.append((lo, lo + size, True))
        acc = torch.float32 if x.is_cuda else torch.float64
        parts, stats = [], []
        for lo, hi, counted in pieces or [(0, 0, False)]:
            st = CaptureStats(d, x.device, acc) if counted else None
            parts.append(gather_cast(x, item[lo:hi], pos[lo:hi], self.dtype, st))
            if st is not None:
                stats.append(st.staging)
        self.stats[hook] = torch.stack(stats) if stats else torch.zeros(0, 2 * d + 1, dtype=acc, device=x.device)
        if self.dtype == "int8":
            self.scales[hook] = torch.cat([s for _, s in parts]) if len(parts) > 1 else parts[0][1]
        return torch.cat([v for v, _ in parts]) if len(parts) > 1 else parts[0][0]

    def advance(self, rows: int, skip: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """After a batch of ``rows`` rows (the first ``skip`` already stored): its ``(scales, stats)``."""
        out = self.scales, self.stats
        self.scales, self.stats = {}, {}
        self.first_row += rows - skip
        self.skip = 0
        return out


class _HostCopy:
    """Device-to-host copies of one batch's tensors (values, scales, statistics), started without waiting.

    On CUDA the tensors (already in the store dtype) go into pinned host buffers with ``non_blocking=True``
    and an event marks their completion, so the copies overlap the next batch's forward pass; ``get`` waits
    for that event only when the batch is written. On CPU the tensors are used as they are.
    """

    def __init__(self, *groups: dict[str, torch.Tensor]):
        self.event = None
        self.groups = [{k: self._start(x) for k, x in g.items()} for g in groups]
        if any(x.is_pinned() for g in self.groups for x in g.values()):
            self.event = torch.cuda.Event()
            self.event.record()

    @staticmethod
    def _start(x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return x
        host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        host.copy_(x, non_blocking=True)
        return host

    def get(self) -> list[dict[str, torch.Tensor]]:
        if self.event is not None:
            self.event.synchronize()
        return self.groups


def _write(writer: "shards.ShardWriter", fb: ForwardBatch, staged: _HostCopy, skip: int, dtype: str) -> None:
    """Append one batch's rows (minus the ``skip`` already stored before a resume) to the store."""
    values, scales, stats = staged.get()
    columns = _columns(fb, values, scales, dtype)
    writer.append({c: v[skip:] for c, v in columns.items()}, {h: s.double().numpy() for h, s in stats.items()},
                  item=fb.start, n_items=len(fb), skip=skip)


def _rows_per_shard(shard_mb: float, dims: dict[str, int], dtype: str) -> int:
    if not shard_mb > 0:
        raise StoreError(f"shard_mb must be positive, got {shard_mb}.")
    return max(1, int(shard_mb * 2**20) // (max(dims.values()) * shards.itemsize(dtype)))


def capture(
    model: HookedModel,
    source: PromptSet | TextCorpus | str | os.PathLike,
    hooks: str | list[str],
    *,
    positions: str | PositionFn = CaptureConfig.positions,
    out: str | os.PathLike,
    dtype: str = CaptureConfig.dtype,
    batch_size: int = CaptureConfig.batch_size,
    max_tokens: int | None = CaptureConfig.max_tokens,
    context: int | None = CaptureConfig.context,
    shard_mb: float = CaptureConfig.shard_mb,
    resume: bool = CaptureConfig.resume,
    item_range: tuple[int, int] | None = None,
) -> ActivationStore:
    """Capture activations of ``hooks`` at ``positions`` into an activation store at ``out``.

    The source is read in a fixed order and written in shards of equal rows; memory stays at
    one batch plus one shard's metadata whatever the source size. A capture killed at any
    point resumes when called again with the same arguments and yields the same store, byte
    for byte (given the same ``batch_size``). ``out`` is also a run directory (``run.json``,
    kind ``capture``).

    Args:
        model: a hooked model from ``replab.load_model``.
        source: a ``PromptSet`` (rows carry its label/target/subject metadata), a
            ``TextCorpus`` (packed into contexts of ``context`` tokens, each starting with
            BOS), or a path/spec understood by ``replab.datasets.load``.
        hooks: hook names or globs (``"blocks.*.hook_resid_post"``), see ``replab.hook_names``.
        positions: ``"all"`` (padding never stored), ``"last"``, ``"subject_last"``, or
            ``fn(item_index, token_ids) -> positions``.
        out: the store directory.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (values rounded from float32), or ``"int8"``
            (symmetric per-row codes plus one float32 scale per row, dequantised on read; every entry within
            ``max|row| / 254`` of its float32 value, see docs/kernels.md).
        batch_size: prompts or contexts per forward pass.
        max_tokens: corpus only: stop after ``max_tokens // context`` contexts.
        context: corpus only: tokens per context (default ``min(128, n_ctx)``).
        shard_mb: shard size in MiB for the widest hook (all hooks share row boundaries).
        resume: continue a matching partial store at ``out`` (a complete one is returned as is);
            ``False`` overwrites whatever store is there.
        item_range: capture only source items ``[lo, hi)`` (``lo`` a multiple of ``batch_size``):
            one rank's part. Inside an initialised ``torch.distributed`` process group (``torchrun``)
            ranks split the items themselves and the store at ``out`` is the same as one process's
            (see ``replab.activations.parallel``).

    Returns:
        The ``ActivationStore`` at ``out``: ``store[hook]`` is ``[n_rows, d]``; ``store.stats(hook)`` gives
        the per-dimension mean and variance and the mean row norm recorded while capturing (of the
        float32 rows before the cast or quantisation).

    Raises:
        HookNameError: a hook matches nothing (close matches listed).
        DataError: positions the source cannot supply, a non-per-token hook, bad context.
        StoreError: ``out`` holds a store made with different settings (differences listed).
    """
    CaptureConfig(dtype=dtype, batch_size=batch_size, max_tokens=max_tokens, context=context, shard_mb=shard_mb)
    out = Path(out)
    src = as_source(source, model, context=context, max_tokens=max_tokens)
    spec = Positions.parse(positions)
    spec.check(src)
    names = resolve_hooks(model, hooks)
    dims = {h: int(np.prod(shape)) for h, shape in hook_widths(model, names).items()}
    settings = {
        "format_version": shards.FORMAT_VERSION, "model": model_id(model), "model_hash": weights_hash(model),
        "hooks": names, "dims": dims, "dtype": dtype, "positions": spec.describe(),
        "source": src.describe() if item_range is None else {**src.describe(), "items": list(item_range)},
        "shard_mb": shard_mb, "rows_per_shard": _rows_per_shard(shard_mb, dims, dtype),
        "meta_columns": list(shards.META_COLUMNS), "replab_version": _version(),
    }
    if item_range is None and distributed.world_size() > 1:
        from replab.activations.parallel import capture_parallel

        return capture_parallel(model, src, hooks, settings, positions=positions, out=out, dtype=dtype,
                                batch_size=batch_size, shard_mb=shard_mb, resume=resume)
    manifest = shards.prepare(out, settings, resume=resume)
    if manifest["complete"]:
        return ActivationStore.open(out)

    config = {"source": settings["source"], "hooks": hooks if isinstance(hooks, str) else list(hooks),
              "positions": spec.describe(), "dtype": dtype, "batch_size": batch_size, "max_tokens": max_tokens,
              "context": getattr(src, "context", None), "shard_mb": shard_mb, "resume": resume}
    run = Run.create(out, "capture", config, model=model)
    records = src.records()
    if records is not None:
        manifest["prompts"] = {"sha256": shards.file_sha256(run.write_json(shards.PROMPTS, records))}
    writer = shards.ShardWriter(out, manifest, save=partial(run.write_json, shards.MANIFEST))
    resumed_rows = manifest["n_rows"]
    cursor = manifest["cursor"]
    first, stop = item_range or (0, None)
    tokens_done, n_items = 0, max(cursor["item"], first)
    t0 = time.perf_counter()
    take = _Take(dtype, int(manifest["rows_per_shard"]), manifest["n_rows"],
                 cursor["skip"] if n_items == cursor["item"] else 0)
    batches = run_batches(model, src, names, positions=spec, batch_size=batch_size, start=n_items,
                          take=take, progress=f"capture {out.name}")
    with run.timer("capture"):
        pending = None  # the previous batch, written while the device computes the next one
        for fb in batches:
            if stop is not None and fb.start >= stop:
                break
            skip = cursor["skip"] if fb.start == cursor["item"] else 0
            staged = _HostCopy(fb.acts, *take.advance(len(fb.item), skip))
            if pending is not None:
                _write(writer, *pending)
            pending = (fb, staged, skip, dtype)
            n_items = fb.start + len(fb)
            tokens_done += int(fb.lengths.sum())
        if pending is not None:
            _write(writer, *pending)
        if writer.manifest["n_rows"] + writer.pending_rows == 0:
            raise DataError("The capture selected no rows at all; check the source and the positions spec.")
        manifest = writer.finish(n_items)
    elapsed = time.perf_counter() - t0
    run.finish({"rows": manifest["n_rows"], "tokens": tokens_done, "tokens_per_s": tokens_done / max(elapsed, 1e-9),
                "resumed_from_rows": resumed_rows, "shards": len(manifest["shards"])})
    return ActivationStore.open(out)


def _version() -> str:
    import replab

    return replab.__version__
