"""Scale-out plumbing over ``torch.distributed``: who am I, which items are mine, wait, gather, agree.

Every method that runs under ``torchrun`` uses these few helpers, so a single process (no
process group) is just the case ``world_size() == 1`` and needs no special code path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from replab.errors import ReplabError


class DistributedError(ReplabError):
    """Ranks disagree (different settings) or the process group is not usable."""


_LOCAL = 0  # > 0 inside ``local()``: this process works alone although a process group exists


def _dist():
    import torch.distributed as dist

    return dist if not _LOCAL and dist.is_available() and dist.is_initialized() else None


@contextmanager
def local() -> Iterator[None]:
    """Inside this block the process acts as a world of one (rank 0), e.g. to train its own SAE of a
    ``--distribute-hooks`` run while the process group stays initialised for the barrier after it."""
    global _LOCAL
    _LOCAL += 1
    try:
        yield
    finally:
        _LOCAL -= 1


def world_size() -> int:
    """Processes in the initialised process group (1 without one)."""
    d = _dist()
    return d.get_world_size() if d else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    d = _dist()
    return d.get_rank() if d else 0


def is_main() -> bool:
    """True on rank 0, the rank that writes shared files (manifests, merged run directories)."""
    return rank() == 0


def init_from_env() -> bool:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    NCCL when CUDA is available, gloo otherwise; each rank then uses ``cuda:LOCAL_RANK``.
    Returns True when a group is (now) initialised with more than one process.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return world_size() > 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return world_size() > 1


def default_device() -> str | None:
    """``cuda:LOCAL_RANK`` under a multi-process launch (``WORLD_SIZE`` > 1) with GPUs, else None (the caller's default)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


def partition(n: int, parts: int, index: int, *, align: int = 1) -> tuple[int, int]:
    """Item range ``[lo, hi)`` of part ``index`` when ``n`` items are split into ``parts`` contiguous ranges.

    The split is in blocks of ``align`` items (a capture's batch size, so every rank forms exactly
    the batches one process would); the first ``blocks % parts`` parts get one extra block, the last
    block may be short. Parts beyond the number of blocks get empty ranges. Deterministic in its
    arguments alone, so every rank computes every rank's range.
    """
    if parts < 1 or not 0 <= index < parts or align < 1 or n < 0:
        raise ValueError(f"bad partition: n={n}, parts={parts}, index={index}, align={align}")
    blocks = -(-n // align)
    base, extra = divmod(blocks, parts)
    b_lo = index * base + min(index, extra)
    b_hi = b_lo + base + (index < extra)
    return min(b_lo * align, n), min(b_hi * align, n)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    d = _dist()
    if d:
        d.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable; sent in memory, never written), in rank order, on every rank (``[obj]`` in one process)."""
    d = _dist()
    if not d:
        return [obj]
    out: list[Any] = [None] * d.get_world_size()
    d.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    d = _dist()
    if not d:
        return obj
    box = [obj]
    d.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` over ranks in place and return it (unchanged in one process)."""
    d = _dist()
    if d:
        d.all_reduce(x, op=d.ReduceOp.SUM)
    return x


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` ``[n_r, ...]`` concatenated along dim 0 in rank order (``n_r`` may differ; ``x`` in one process)."""
    d = _dist()
    if not d:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.get_world_size())]
    d.all_gather(sizes, n)
    longest = int(max(sizes))
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    d.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def mine(items: list[Any]) -> list[Any]:
    """This rank's contiguous share of ``items`` (``partition``; all of them in one process)."""
    lo, hi = partition(len(items), world_size(), rank())
    return items[lo:hi]


def check_same(settings: Mapping[str, Any], what: str) -> None:
    """Refuse to go on when the ranks were started with different ``settings``.

    Raises:
        DistributedError: on every rank, naming each setting that differs and the ranks' values.
    """
    mine = json.loads(json.dumps(settings, sort_keys=True, default=str))
    every = gather_objects(mine)
    def show(s: Mapping[str, Any], k: str) -> str:
        return json.dumps(s.get(k), sort_keys=True)

    diffs = [f"{k}: " + ", ".join(f"rank {r} has {show(s, k)[:80]}" for r, s in enumerate(every))
             for k in sorted(set().union(*every)) if len({show(s, k) for s in every}) > 1]
    if diffs:
        raise DistributedError(f"The {len(every)} ranks of this {what} were started with different settings; "
                               "refusing to mix them.\n  " + "\n  ".join(diffs) +
                               "\nLaunch every rank with the same command line and data.")
