"""2 CPU processes (gloo, localhost): distributed capture gives the one-process store byte for byte, resumes
after a rank is killed and refuses mixed settings (library and ``torchrun -m replab capture``); DDP SAE training
equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

from replab import distributed
from replab.activations import ActivationStore, capture
from replab.activations.store import verify
from replab.datasets import TextCorpus

TEXTS = [f"The capital of France is Paris. A dog is a mammal number {i}." for i in range(3)] + [
    "The movie was great, honestly. The book was terrible.", "Two days after Monday is Wednesday.",
    "The capital of Japan is Tokyo.", "A cat is a mammal.", "The movie was terrible.", "Monday."]
HOOKS = ["hook_embed", "blocks.*.hook_resid_post"]
# Contexts of 6 tokens in batches of 2, an odd number of batches (rank 0 takes one more); shards of 8 rows
# (32 float32 values each), so each rank commits several shards and ends with a short one.
ROWS_PER_SHARD = 8
KW = dict(context=6, batch_size=2, shard_mb=ROWS_PER_SHARD * 32 * 4 / 2**20)


def _corpus() -> TextCorpus:
    return TextCorpus(TEXTS, name="dist-tiny")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_store(a: ActivationStore, b: ActivationStore) -> None:
    assert a.hooks == b.hooks and len(a) == len(b)
    for h in a.hooks:
        x, y = np.asarray(a[h]), np.asarray(b[h])
        assert x.dtype == y.dtype == np.float32 and x.tobytes() == y.tobytes(), h
    for c in ("prompt_index", "position", "token_id"):
        assert np.array_equal(np.asarray(a.metadata[c]), np.asarray(b.metadata[c])), c


def _n_batches(single: ActivationStore) -> int:
    """Batches of 2 items in the capture."""
    return -(-(int(np.asarray(single.metadata["prompt_index"]).max()) + 1) // 2)


def _rank0_rows(single: ActivationStore) -> int:
    """Rows that rank 0 of 2 captures: its items are the first half of the batches of 2, rounded up."""
    return int(np.sum(np.asarray(single.metadata["prompt_index"]) < 2 * (_n_batches(single) // 2 + 1)))


def _worker(rank: int, world: int, port: int, ckpt: str, out: str, die: str) -> None:
    """One rank of a capture; ``die``: "commit" (rank 1 exits after committing its first shard), "finish"
    (rank 0 exits once its part is complete, before the part's run.json is finished) or "" (no failure)."""
    import torch.distributed as dist

    import replab
    from replab.activations import shards
    from replab.runs import Run

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = replab.load_model(ckpt)
    if die == "finish" and rank == 0:
        Run.finish = lambda self, metrics=None: os._exit(3)  # (its first finish is its part's)
    if die == "commit":
        # Different settings on the two ranks are refused on both, before anything is written.
        with pytest.raises(distributed.DistributedError, match="dtype: rank 0 has \"float32\", rank 1 has \"float16\""):
            capture(model, _corpus(), HOOKS, out=out, dtype=["float32", "float16"][rank], **KW)
        assert not Path(out).exists()
        if rank == 1:  # rank 1 dies right after committing its first shard
            commit = shards.ShardWriter._commit

            def commit_then_die(self, cursor):
                commit(self, cursor)
                os._exit(3)

            shards.ShardWriter._commit = commit_then_die
    capture(model, _corpus(), HOOKS, out=out, **KW)
    dist.destroy_process_group()


def test_partition_is_contiguous_batch_aligned_and_covers_everything():
    ranges = [distributed.partition(9, 2, r, align=2) for r in range(2)]
    assert ranges == [(0, 6), (6, 9)]
    assert [distributed.partition(5, 4, r, align=2) for r in range(4)] == [(0, 2), (2, 4), (4, 5), (5, 5)]
    for n, parts, align in [(0, 3, 1), (17, 3, 4), (100, 8, 7)]:
        got = [distributed.partition(n, parts, r, align=align) for r in range(parts)]
        assert got[0][0] == 0 and got[-1][1] == n and all(a[1] == b[0] for a, b in zip(got, got[1:]))
        assert all(lo % align == 0 for lo, hi in got if lo < n)


def test_killed_rank_resumes_to_the_single_process_store(tiny_checkpoint, tiny_model, tmp_path):
    single = capture(tiny_model, _corpus(), HOOKS, out=tmp_path / "single", **KW)
    out = tmp_path / "dist"
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(_worker, args=(2, _free_port(), tiny_checkpoint, str(out), "commit"), nprocs=2)
    part = out / "parts" / "00001-of-00002"
    assert json.loads((part / "manifest.json").read_text())["n_rows"] == ROWS_PER_SHARD  # its first shard survived
    assert not (out / "manifest.json").is_file() or not json.loads((out / "manifest.json").read_text())["complete"]
    mp.spawn(_worker, args=(2, _free_port(), tiny_checkpoint, str(out), ""), nprocs=2)
    store = ActivationStore.open(out)
    _same_store(store, single)
    items = np.asarray(single.metadata["prompt_index"])
    assert _n_batches(single) % 2 == 1  # an odd number of batches: an uneven split
    first = _rank0_rows(single)
    n_shards = -(-first // ROWS_PER_SHARD) + -(-(len(items) - first) // ROWS_PER_SHARD)
    assert [s["rows"] for s in store.manifest["shards"]].count(ROWS_PER_SHARD) == n_shards - 2
    assert verify(out) == {"rows": len(single), "shards": n_shards, "files": n_shards * 6, "complete": True}
    assert not (out / "parts").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["metrics"]["world_size"] == 2
    # rank 1's committed shard, plus whatever rank 0 committed before it was terminated
    assert ROWS_PER_SHARD <= run["metrics"]["resumed_from_rows"] < len(single)
    assert run["metrics"]["rows"] == len(single)  # "tokens" counts only what the resumed run computed


def test_part_completed_before_its_run_json_was_finished_resumes(tiny_checkpoint, tiny_model, tmp_path):
    """A rank killed between completing its part's shards and finishing the part's run.json (the window that
    SIGTERM from a failed peer can hit): the relaunch takes the part as done, counts its rows as resumed and
    its tokens as not computed again, and gives the one-process store."""
    single = capture(tiny_model, _corpus(), HOOKS, out=tmp_path / "single", **KW)
    out = tmp_path / "dist"
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(_worker, args=(2, _free_port(), tiny_checkpoint, str(out), "finish"), nprocs=2)
    part = out / "parts" / "00000-of-00002"
    assert json.loads((part / "manifest.json").read_text())["complete"]
    assert json.loads((part / "run.json").read_text())["status"] == "running"  # the state that raised KeyError
    mp.spawn(_worker, args=(2, _free_port(), tiny_checkpoint, str(out), ""), nprocs=2)
    _same_store(ActivationStore.open(out), single)
    run = json.loads((out / "run.json").read_text())
    first = _rank0_rows(single)
    assert run["status"] == "complete" and run["metrics"]["rows"] == len(single)
    assert first <= run["metrics"]["resumed_from_rows"] <= len(single)
    assert not (out / "parts").exists()


def test_torchrun_cli_capture_matches_one_process(tiny_checkpoint, tiny_model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"text": t, "label": str(i % 2)}) + "\n" for i, t in enumerate(TEXTS)))
    single = capture(tiny_model, str(prompts), HOOKS, out=tmp_path / "single", batch_size=2, positions="last")
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "replab", "capture", "--model", tiny_checkpoint,
           "--prompts", str(prompts), "--hooks", *HOOKS, "--positions", "last", "--batch-size", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    store = ActivationStore.open(out)
    _same_store(store, single)
    assert (out / "prompts.json").read_bytes() == (tmp_path / "single" / "prompts.json").read_bytes()
    check = subprocess.run([sys.executable, "-m", "replab", "verify", str(out)], capture_output=True, text=True,
                           timeout=120, env=env)
    assert check.returncode == 0 and "9 rows" in check.stdout and "complete" in check.stdout, check.stdout


def _sae_worker(rank: int, world: int, port: int, data_path: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_file

    from replab.saes import create, train

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x = load_file(data_path)["x"]
    with pytest.raises(distributed.DistributedError, match="batch_size"):
        train(create("topk", 16, 32, k=4, seed=0), x, batch_size=[64, 32][rank], steps=2)
    train(create("topk", 16, 32, k=4, seed=0), x, batch_size=64, steps=30, out=out, dead_after_tokens=256)
    dist.destroy_process_group()


def test_ddp_sae_training_equals_one_process_with_the_same_global_batch(tmp_path):
    import torch
    from safetensors.torch import save_file

    from replab.saes import create, load, train

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=g) @ torch.randn(4, 16, generator=g) + 0.1 * torch.randn(1000, 16, generator=g)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    single = train(create("topk", 16, 32, k=4, seed=0), x, batch_size=64, steps=30, dead_after_tokens=256)
    mp.spawn(_sae_worker, args=(2, _free_port(), str(tmp_path / "x.safetensors"), str(tmp_path / "ddp")), nprocs=2)
    ddp = load(tmp_path / "ddp")
    for name, p in single.sae.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[name], p, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(single.sae.W_dec, create("topk", 16, 32, k=4, seed=0).W_dec)  # it trained
