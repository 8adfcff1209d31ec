"""Capture across ``torch.distributed`` ranks: disjoint item ranges, one part store per rank, one merged store.

Each rank captures its contiguous range of source items (whole batches, so every rank forms
the very batches one process would) into ``<out>/parts/RRRRR-of-WWWWW/``, an ordinary
resumable store with its own checksummed shards. After a barrier rank 0 links the parts' shards,
in item order, into ``<out>/shards/`` and writes the manifest; the parts are then removed. The
result reads exactly like a single-process capture (same rows, same order, same bytes), a rank
killed at any point resumes from its part on the next launch, and ranks launched with different
settings are refused before any work.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

from replab import distributed
from replab.activations import shards
from replab.activations.store import ActivationStore
from replab.errors import StoreError
from replab.runs import Run, read_json

PARTS = "parts"


def count_items(source, model) -> int:
    """Items (prompts, contexts or token rows) the source yields; a corpus is tokenised once for this."""
    return sum(len(b) for b in source.batches(model, 0, 4096))


def part_dir(out: Path, index: int, parts: int) -> Path:
    """Directory of part ``index`` of ``parts`` (named by both, so a relaunch with another world size starts afresh)."""
    return Path(out) / PARTS / f"{index:05d}-of-{parts:05d}"


def _complete_rows(part: Path) -> int | None:
    """Rows of the part store at ``part`` if an earlier launch completed it, else ``None``."""
    try:
        manifest = shards.read_manifest(part)
    except StoreError:  # none yet, or unreadable: the capture itself starts afresh or says what is wrong
        return None
    return int(manifest["n_rows"]) if manifest["complete"] else None


def capture_parallel(model, src, hooks, settings: dict[str, Any], *, positions, out, dtype: str, batch_size: int,
                     shard_mb: float, resume: bool) -> ActivationStore:
    """Run ``replab.capture`` as one rank of the process group (called by ``capture`` itself).

    Args:
        model, src, hooks, positions, dtype, batch_size, shard_mb, resume: as given to ``capture``
            (``src`` already a source).
        settings: the store settings ``capture`` computed; with ``batch_size`` and ``resume`` they
            must be the same on every rank.

    Raises:
        DistributedError: ranks launched with different settings (every rank raises).
        StoreError: as ``capture``.
    """
    from replab.activations.capture import capture

    out = Path(out)
    distributed.check_same({**settings, "batch_size": batch_size, "resume": resume, "out": str(out.resolve())},
                           "capture")
    world, me = distributed.world_size(), distributed.rank()
    n_items = count_items(src, model)
    ranges = [distributed.partition(n_items, world, r, align=batch_size) for r in range(world)]
    manifest, state = None, "go"
    if distributed.is_main():
        try:
            manifest = shards.prepare(out, settings, resume=resume)
        except StoreError as exc:
            state = str(exc)
        else:
            state = "complete" if manifest["complete"] else "go"
            mine = {part_dir(out, r, world).name for r in range(world)}
            if state == "go" and (out / PARTS).is_dir():
                for p in (out / PARTS).iterdir():
                    if not resume or p.name not in mine:
                        shutil.rmtree(p)
    state = distributed.broadcast_object(state)
    if state == "complete":
        return ActivationStore.open(out)
    if state != "go":
        raise StoreError(state)
    distributed.barrier()  # rank 0 has removed stale parts before anyone writes

    lo, hi = ranges[me]
    work = {"tokens": 0, "resumed_from_rows": 0, "capture": 0.0}  # what this launch computed on this rank
    if lo < hi:
        part = part_dir(out, me, world)
        done_before = _complete_rows(part) if resume else None
        capture(model, src, hooks, positions=positions, out=part, dtype=dtype,
                batch_size=batch_size, shard_mb=shard_mb, resume=resume, item_range=(lo, hi))
        if done_before is not None:  # finished by an earlier launch (its run.json may predate it, or be unfinished)
            work["resumed_from_rows"] = done_before
        else:
            info = read_json(part / "run.json", "Part of a distributed capture:")
            work = {"tokens": info["metrics"]["tokens"], "resumed_from_rows": info["metrics"]["resumed_from_rows"],
                    "capture": info["timings"].get("capture", 0.0)}
    works = distributed.gather_objects(work)  # (also the barrier: every part is complete)

    if distributed.is_main():
        assert manifest is not None
        parts = [part_dir(out, r, world) for r, (r_lo, r_hi) in enumerate(ranges) if r_lo < r_hi]
        config = read_json(parts[0] / "run.json", "Part of a distributed capture:")["config"]
        run = Run.create(out, "capture", {**config, "source": settings["source"], "world_size": world}, model=model)
        if (parts[0] / shards.PROMPTS).is_file():
            written = run.write_json(shards.PROMPTS, read_json(parts[0] / shards.PROMPTS, "Prompts of a capture part:"))
            manifest["prompts"] = {"sha256": shards.file_sha256(written)}
        run.info["timings"]["capture"] = max(w["capture"] for w in works)  # the slowest rank
        manifest = shards.merge(out, manifest, parts, n_items, save=partial(run.write_json, shards.MANIFEST))
        tokens = sum(w["tokens"] for w in works)
        run.finish({"rows": manifest["n_rows"], "tokens": tokens, "shards": len(manifest["shards"]),
                    "tokens_per_s": tokens / max(run.info["timings"]["capture"], 1e-9), "world_size": world,
                    "resumed_from_rows": sum(w["resumed_from_rows"] for w in works)})
        shutil.rmtree(out / PARTS)
    distributed.barrier()
    return ActivationStore.open(out)
